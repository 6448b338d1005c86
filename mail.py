"""Sending one e-mail through the configured SMTP server (``SMTP_URL``).

    smtps://user:password@mail.example.org        TLS from the start (465)
    smtp://user:password@mail.example.org         STARTTLS, required (587)
    smtp+plain://127.0.0.1:25                      no TLS: a relay on this host

The standard library's smtplib and email do the work; this module only reads
the URL (config.check has refused any other scheme), insists on TLS where it
says so (credentials never cross in clear), and builds a message with a
plain-text and an HTML part.
"""

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from config import SMTP_SCHEMES


def send(
    url: str,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    timeout: float = 10.0,
) -> None:
    """Send one message (text and HTML alternatives); smtplib's exceptions
    (or OSError) when the server or the connection refuses it."""
    parts = urlsplit(url)  # config.check has checked it
    port = parts.port or SMTP_SCHEMES[parts.scheme]
    host = parts.hostname or ""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">"))
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    context = ssl.create_default_context()
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host, port, timeout=timeout, context=context
        )
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        if parts.scheme == "smtp":
            client.ehlo()
            if not client.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError(
                    "the server does not offer STARTTLS, which smtp:// requires"
                )
            client.starttls(context=context)
            client.ehlo()
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message)
