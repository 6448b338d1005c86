"""E-mail: an account's address, confirmed by a link sent to it before
anything else is sent there, then told of the events its owner picked, in
plain text and HTML, through a real SMTP server (aiosmtpd) that keeps what
it is sent."""

import email
import email.policy
import re
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from harness.server import free_port
from helpers import HTML, bearer, make_app, self_signed, user_id
from models import Delivery, User, db
from test_notifications import deliveries, make_due, send_due
from test_upload_requests import guest_upload, link_of, make_request


class Mailbox:
    """aiosmtpd's handler: keeps each message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(
            envelope.content, policy=email.policy.default
        )
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.url = f"smtp+plain://127.0.0.1:{controller.port}"
    yield box
    controller.stop()


@pytest.fixture
def app_settings(mailbox):
    mailbox.messages.clear()
    return {"SMTP_URL": mailbox.url, "MAIL_FROM": "Lockbox <lockbox@example.org>"}


def set_email(client, token, address, events=("request.closed",)):
    answer = client.put(
        "/account/email",
        json={"email": address, "events": list(events)},
        headers=bearer(token),
    )
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def parts(message) -> tuple[str, str]:
    """A message's plain text and HTML."""
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


def confirmation_path(message) -> str:
    text, _ = parts(message)
    url = re.search(r"http://localhost(/account/email/confirm/\S+)", text)
    return url.group(1)


def close_a_request(client, token, title="Scans") -> int:
    request_id = make_request(client, token, title=title)["id"]
    closed = client.post(f"/requests/{request_id}/close", headers=bearer(token))
    assert closed.status_code == 200
    return request_id


def test_an_address_is_confirmed_before_anything_else_goes_there(
    app, client, token, mailbox
):
    settings = set_email(client, token, "alice@example.org")
    assert settings == {
        "email": "alice@example.org",
        "confirmed": False,
        "events": ["request.closed"],
        "sending": True,
    }
    close_a_request(client, token)  # not told: the address is not confirmed
    send_due(app)
    (asking,) = mailbox.messages
    assert asking["To"] == "alice@example.org"
    assert asking["From"] == "Lockbox <lockbox@example.org>"
    assert asking["Subject"] == "Confirm your e-mail address for Lockbox"
    text, html = parts(asking)
    assert "Hello alice" in text and "Confirm this address" in html
    confirmed = client.get(confirmation_path(asking), headers=bearer(token))
    assert confirmed.status_code == 200 and confirmed.get_json()["confirmed"] is True
    close_a_request(client, token, title="Tax <2026>")
    send_due(app)
    told = mailbox.messages[1]
    assert told["Subject"] == "Your upload request was closed"
    text, html = parts(told)
    assert 'Your upload request "Tax <2026>" was closed.' in text
    assert "<strong>Tax &lt;2026&gt;</strong>" in html  # escaped in HTML
    assert len(mailbox.messages) == 2


def test_a_guests_visit_is_one_message_listing_its_files(app, client, token, mailbox):
    set_email(client, token, "alice@example.org", ["request.received"])
    send_due(app)
    client.get(confirmation_path(mailbox.messages[0]), headers=bearer(token))
    request_link = link_of(make_request(client, token))
    for name in ("a.pdf", "b.pdf"):
        answer, _ = guest_upload(client, request_link, b"%PDF-1.4 x", name)
        assert answer.status_code in (201, 204)
    make_due(app)
    send_due(app)
    (told,) = mailbox.messages[1:]
    text, _ = parts(told)
    assert told["Subject"] == "Files arrived through your upload request"
    assert "2 files arrived" in text and "- a.pdf" in text and "- b.pdf" in text


def test_a_link_for_another_address_or_account_confirms_nothing(
    app, client, token, auth, mailbox
):
    set_email(client, token, "old@example.org")
    send_due(app)
    old_link = confirmation_path(mailbox.messages[0])
    set_email(client, token, "new@example.org")
    refused = client.get(old_link, headers=bearer(token))
    assert refused.status_code == 400
    assert refused.get_json()["message"].startswith("This link does not confirm")
    auth.create_user("bob")
    bob = auth.token("bob")
    set_email(client, bob, "new@example.org")
    send_due(app)
    # Both asked new@example.org, in whatever order the senders took them.
    alice_id = user_id(app, "alice")
    (alices,) = [
        path
        for path in map(confirmation_path, mailbox.messages[1:])
        if path.startswith(f"/account/email/confirm/{alice_id}-")
    ]
    assert client.get(alices, headers=bearer(bob)).status_code == 400
    assert client.get(alices + "x", headers=bearer(token)).status_code == 400
    assert client.get(alices, headers=bearer(token)).status_code == 200


def test_removing_the_address_stops_the_mail(app, client, token, mailbox):
    set_email(client, token, "alice@example.org")
    send_due(app)
    client.get(confirmation_path(mailbox.messages[0]), headers=bearer(token))
    cleared = set_email(client, token, None)
    assert cleared["email"] is None and cleared["confirmed"] is False
    close_a_request(client, token)
    send_due(app)
    assert len(mailbox.messages) == 1


def test_a_server_without_smtp_takes_no_address(client, token, app):
    app.config["SMTP_URL"] = None
    answer = client.put(
        "/account/email", json={"email": "a@example.org"}, headers=bearer(token)
    )
    assert answer.status_code == 409
    assert answer.get_json() == {
        "message": "This server sends no e-mail (SMTP_URL is not set)"
    }
    page = client.get("/webhooks", headers={**HTML, **bearer(token)})
    assert "This server sends no e-mail" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"email": "not an address"}, "email: email must be an e-mail address"),
        ({}, "email: email is required (null to stop e-mail)"),
        ({"email": "a@example.org", "events": ["x"]}, "events: unknown event type x"),
    ],
)
def test_a_bad_address_is_a_400(client, token, body, message):
    answer = client.put("/account/email", json=body, headers=bearer(token))
    assert answer.status_code == 400
    assert answer.get_json() == {"message": message}


def test_a_mail_server_that_is_down_is_tried_again(app, client, token):
    app.config["SMTP_URL"] = f"smtp+plain://127.0.0.1:{free_port()}"
    set_email(client, token, "alice@example.org")
    send_due(app)
    (row,) = deliveries(app)
    assert row.status == "pending" and row.attempts == 1
    assert "ConnectionRefusedError" in row.last_error


def test_smtp_without_starttls_is_refused_rather_than_sent_in_clear(
    app, client, token, mailbox
):
    app.config["SMTP_URL"] = mailbox.url.replace("smtp+plain://", "smtp://")
    set_email(client, token, "alice@example.org")
    send_due(app)
    (row,) = deliveries(app)
    assert "does not offer STARTTLS" in row.last_error
    assert mailbox.messages == []


def test_the_page_saves_an_address_and_the_cli_sets_one(
    app, client, token, runner, mailbox
):
    saved = client.post(
        "/account/email",
        data={"email": "alice@example.org", "events": ["link.downloaded"]},
        headers={**HTML, **bearer(token)},
    )
    assert saved.status_code == 303
    page = client.get("/webhooks", headers={**HTML, **bearer(token)}).get_data(
        as_text=True
    )
    assert "A link to confirm it is on its way to alice@example.org" in page
    assert "is not confirmed yet" in page
    result = runner.invoke(
        args=[
            "users",
            "set-email",
            "alice",
            "a2@example.org",
            "--base-url",
            "https://files.example.org",
        ]
    )
    assert result.exit_code == 0, result.output
    send_due(app)
    # Sent side by side, in whatever order the senders took them.
    by_address = {message["To"]: message for message in mailbox.messages}
    assert set(by_address) == {"alice@example.org", "a2@example.org"}
    text, _ = parts(by_address["a2@example.org"])
    assert "https://files.example.org/account/email/confirm/" in text
    with app.app_context():
        user = db.session.execute(db.select(User)).scalar_one()
        assert user.email == "a2@example.org" and user.email_confirmed_at is None
        assert db.session.execute(db.select(Delivery)).scalars().all()


def test_a_malformed_smtp_url_stops_the_app_from_starting(database_url):
    from config import ConfigError

    with pytest.raises(ConfigError, match="SMTP_URL must be"):
        make_app(database_url, SMTP_URL="http://mail.example.org")


@pytest.fixture(scope="module")
def secure_mailbox(tmp_path_factory):
    """A mail server for localhost that wants STARTTLS and then a login
    (alice-mail, 'post box 42'), with a certificate the tests trust."""
    cert, key = self_signed(tmp_path_factory.mktemp("smtp-tls"), "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    box.logins = []

    def authenticate(server, session, envelope, mechanism, auth_data):
        box.logins.append((auth_data.login, auth_data.password))
        ok = (auth_data.login, auth_data.password) == (b"alice-mail", b"post box 42")
        return AuthResult(success=ok)

    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="localhost",
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticate,
    )
    controller.start()
    box.port, box.cert = controller.port, cert
    yield box
    controller.stop()


def test_starttls_and_a_login_carry_the_mail(
    app, client, token, secure_mailbox, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(secure_mailbox.cert))  # trust it
    secure_mailbox.messages.clear()
    port = secure_mailbox.port
    app.config["SMTP_URL"] = f"smtp://alice-mail:post%20box%2042@localhost:{port}"
    set_email(client, token, "alice@example.org")
    send_due(app)
    (asking,) = secure_mailbox.messages
    assert asking["Subject"] == "Confirm your e-mail address for Lockbox"
    assert secure_mailbox.logins[-1] == (b"alice-mail", b"post box 42")


def invitation_path(message) -> str:
    text, _ = parts(message)
    return re.search(r"http://localhost(/invite/[A-Za-z0-9_-]{43})", text).group(1)


def test_an_invitation_goes_to_the_new_persons_address(app, client, auth, mailbox):
    """An administrator invites someone with an address: the link goes there
    (text and HTML), and the answer says it did; it sets the password once."""
    auth.create_user("root")
    app.test_cli_runner().invoke(args=["users", "set-role", "root", "admin"])
    admin = auth.token("root")
    answer = client.post(
        "/admin/users",
        json={"username": "dana", "email": "dana@example.org"},
        headers=bearer(admin),
    )
    assert answer.status_code == 201
    assert answer.get_json()["invitation"]["emailed"] is True
    (invited,) = mailbox.messages
    assert invited["To"] == "dana@example.org"
    assert invited["Subject"] == "You are invited to Lockbox"
    text, html = parts(invited)
    path = invitation_path(invited)
    assert path in html and "dana" in text
    assert answer.get_json()["invitation"]["url"].endswith(path)
    body = {"password": "a new password", "confirm": "a new password"}
    assert client.post(path, json=body).status_code == 204
    assert client.post(path, json=body).status_code == 410


def test_an_invitation_that_cannot_be_mailed_is_shown_to_the_admin(app, client, auth):
    """The mail server is down: the account and its link are still made, and
    the link is shown (the answer says it was not sent)."""
    app.config["SMTP_URL"] = f"smtp+plain://127.0.0.1:{free_port()}"
    auth.create_user("root")
    app.test_cli_runner().invoke(args=["users", "set-role", "root", "admin"])
    answer = client.post(
        "/admin/users",
        json={"username": "erin", "email": "erin@example.org"},
        headers=bearer(auth.token("root")),
    )
    assert answer.status_code == 201
    invitation = answer.get_json()["invitation"]
    assert invitation["emailed"] is False
    assert "/invite/" in invitation["url"]
