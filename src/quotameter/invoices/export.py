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
from quotameter.money import amount_text
from quotameter.timeutil import rfc3339

CSV_COLUMNS = (
    "invoice",
    "customer",
    "status",
    "period_start",
    "period_end",
    "currency",
    "kind",
    "description",
    "feature",
    "quantity",
    "unit_price",
    "amount",
)


def to_csv(invoices: Iterable[Invoice]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for inv in invoices:
        head = [
            inv.number,
            inv.customer,
            inv.status,
            rfc3339(inv.period.start),
            rfc3339(inv.period.end),
            inv.currency,
        ]
        for line in inv.lines:
            money = line.as_dict(inv.currency)
            writer.writerow(
                [
                    *head,
                    line.kind,
                    line.description,
                    line.feature or "",
                    plain(line.quantity),
                    money["unit_price"] or "",
                    money["amount"],
                ]
            )
        writer.writerow([*head, "total", "total", "", "", "", amount_text(inv.total, inv.currency)])
    return out.getvalue()


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
    )


def to_html(invoice: Invoice) -> str:
    lines = [
        {**line.as_dict(invoice.currency), "quantity": plain(line.quantity)}
        for line in invoice.lines
    ]
    return (
        _environment()
        .get_template("invoice.html")
        .render(
            invoice=invoice,
            lines=lines,
            total=amount_text(invoice.total, invoice.currency),
            at=rfc3339(invoice.at),
            period_start=rfc3339(invoice.period.start),
            period_end=rfc3339(invoice.period.end),
        )
    )
