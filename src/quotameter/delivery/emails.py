"""E-mail over SMTP: one message per notice to its recipients, plain text and HTML."""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

import orjson
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from quotameter.catalog.model import PlanSpec
from quotameter.delivery.model import EMAIL, Notice, describe
from quotameter.delivery.service import DeliveryFailed, Outgoing

log = logging.getLogger("quotameter.delivery")

_templates = Environment(
    loader=PackageLoader("quotameter.delivery", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render(notice: Notice, plans: dict[str, PlanSpec]) -> dict[str, str]:
    """Subject, plain-text and HTML bodies of a notice's e-mail."""
    desc = describe(notice, plans)
    context = {"notice": notice, "d": desc}
    return {
        "subject": desc.subject,
        "text": _templates.get_template("notice.txt").render(context),
        "html": _templates.get_template("notice.html").render(context),
    }


class EmailSender:
    """Sends over SMTP with TLS from the start (`tls`), upgraded (`starttls`) or none."""

    channel = EMAIL

    def __init__(
        self,
        host: str,
        port: int = 587,
        tls: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        sender: str = "quotameter@localhost",
        timeout: float = 10.0,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if tls not in ("none", "starttls", "tls"):
            raise ValueError(f"smtp_tls: expected none, starttls or tls, not {tls!r}")
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self.username, self.password, self.sender = username, password, sender
        self.context = context or ssl.create_default_context()

    def targets(self, notice: Notice) -> list[str]:
        emails = notice.emails
        return [orjson.dumps(emails).decode()] if emails else []

    def render(self, notice: Notice, plans: dict[str, PlanSpec]) -> str:
        return orjson.dumps(render(notice, plans)).decode()

    def message(self, out: Outgoing, now: datetime) -> EmailMessage:
        content = orjson.loads(out.body)
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(orjson.loads(out.target))
        msg["Subject"] = content["subject"]
        msg["Date"] = format_datetime(now)
        # The same on every retry, so a mail client can fold a repeated delivery into one.
        msg["Message-ID"] = f"<notice-{out.notice_id}.{out.id}@quotameter>"
        msg.set_content(content["text"])
        msg.add_alternative(content["html"], subtype="html")
        return msg

    def send(self, out: Outgoing, now: datetime) -> None:
        msg = self.message(out, now)
        try:
            if self.tls == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.tls == "starttls":
                    smtp.starttls(context=self.context)
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(msg, to_addrs=orjson.loads(out.target))
        except (smtplib.SMTPException, OSError) as err:
            raise DeliveryFailed(
                f"SMTP {self.host}:{self.port}: {type(err).__name__}: {err}"
            ) from err
        if refused:
            # smtplib raises when every recipient is refused; sending again for the others
            # would repeat the message to those who got it.
            log.warning("notice %s: SMTP refused %s", out.notice_id, ", ".join(sorted(refused)))
