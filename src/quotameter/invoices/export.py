"""Invoices as CSV (one row per line, then a total row) and as a printable HTML page."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from quotameter.invoices.model import plain
from quotameter.invoices.service import Invoice
from quotameter.timeutil import rfc3339

CSV_COLUMNS = ("invoice", "customer", "status", "period_start", "period_end", "currency", "kind", "description",
               "feature", "quantity", "unit_price", "amount")


def to_csv(invoices: Iterable[Invoice]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for inv in invoices:
        head = [inv.number, inv.customer, inv.status, rfc3339(inv.period.start), rfc3339(inv.period.end), inv.currency]
        for line in inv.lines:
            writer.writerow([*head, line.kind, line.description, line.feature or "", plain(line.quantity),
                             "" if line.unit_price is None else format(line.unit_price, "f"), format(line.amount, "f")])
        writer.writerow([*head, "total", "total", "", "", "", format(inv.total, "f")])
    return out.getvalue()


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                       autoescape=select_autoescape(["html"]))


def to_html(invoice: Invoice) -> str:
    lines = [{"description": line.description, "kind": line.kind, "quantity": plain(line.quantity),
              "unit_price": None if line.unit_price is None else format(line.unit_price, "f"),
              "amount": format(line.amount, "f")} for line in invoice.lines]
    return _environment().get_template("invoice.html").render(
        invoice=invoice, lines=lines, total=format(invoice.total, "f"), at=rfc3339(invoice.at),
        period_start=rfc3339(invoice.period.start), period_end=rfc3339(invoice.period.end))
