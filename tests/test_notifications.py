"""Webhooks: made by their owner, told of events in the events' own
transactions, sent by exactly one instance, signed per Standard Webhooks
(checked here by the reference library), retried until answered, and never
sent where they must not go."""

import json
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks import Webhook as Verifier
from werkzeug.serving import make_server

import notifications
from helpers import HTML, bearer, make_app, uploaded
from models import Delivery, Share, UploadRequest, db, utcnow
from test_upload_requests import guest_upload, link_of, make_request


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps what it is sent and answers
    with ``answer`` (a status, or a list of statuses taken in turn)."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                receiver.received.append((dict(self.headers), self.rfile.read(length)))
                status = receiver.answers.pop(0) if receiver.answers else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @classmethod
    def on(cls, url: str) -> "Receiver":
        """A receiver at the address another one had."""
        return cls(int(url.rsplit(":", 1)[1].split("/")[0]))

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()

    def bodies(self, secret: str) -> list[dict]:
        """What arrived, each verified against ``secret`` first."""
        verifier = Verifier(secret)
        return [verifier.verify(body, headers) for headers, body in self.received]


@pytest.fixture
def app_settings():
    return {"WEBHOOK_ALLOW_HOSTS": frozenset({"127.0.0.1"})}


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


def add_webhook(client, token, url, events=None) -> dict:
    """POST /webhooks that must succeed; the answer's JSON (with the secret)."""
    answer = client.post(
        "/webhooks",
        json={"url": url, "events": events or list(notifications.EVENT_TYPES)},
        headers=bearer(token),
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def deliveries(app) -> list[Delivery]:
    with app.app_context():
        rows = db.session.execute(db.select(Delivery).order_by(Delivery.id)).scalars()
        return [row for row in rows]


def send_due(app) -> int:
    """One pass of the sender, as the background thread runs it."""
    with app.app_context():
        return notifications.run_once()


def make_due(app) -> None:
    """Every pending delivery due now (as if its wait had passed)."""
    with app.app_context():
        db.session.execute(db.update(Delivery).values(next_attempt_at=utcnow()))
        db.session.commit()


def test_a_webhook_is_made_once_with_its_secret_and_listed_without_it(
    client, token, receiver
):
    made = add_webhook(client, token, receiver.url, ["link.downloaded"])
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 40
    assert made["events"] == ["link.downloaded"] and made["enabled"] is True
    listed = client.get("/webhooks", headers=bearer(token)).get_json()["items"]
    assert listed == [{key: made[key] for key in made if key != "secret"}]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.org/hook", "only to https://"),
        ("https://10.1.2.3/hook", "not a public address"),
        ("https://[::1]/hook", "not a public address"),
        ("https://169.254.169.254/latest", "not a public address"),
        ("ftp://example.org/", "only to https://"),
    ],
)
def test_an_address_it_must_not_send_to_is_refused_when_saved(
    client, token, url, message
):
    answer = client.post(
        "/webhooks",
        json={"url": url, "events": ["link.downloaded"]},
        headers=bearer(token),
    )
    assert answer.status_code == 400
    said = answer.get_json()["message"]
    assert said.startswith("url: ") and message in said


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"events": ["link.downloaded"]}, "url: url is required"),
        ({"url": "https://example.org/", "events": []}, "events: events must name"),
        ({"url": "https://example.org/", "events": ["nope"]}, "events: unknown event"),
    ],
)
def test_a_bad_webhook_is_a_400_naming_what(client, token, body, message):
    answer = client.post("/webhooks", json=body, headers=bearer(token))
    assert answer.status_code == 400
    assert answer.get_json()["message"].startswith(message)


def test_a_download_through_a_link_is_told_once_signed_and_verified(
    app, client, token, receiver
):
    made = add_webhook(client, token, receiver.url)
    file_id = uploaded(client, token, b"hello there", "hello.txt")["id"]
    link = client.post(
        f"/files/{file_id}/shares", json={}, headers=bearer(token)
    ).get_json()
    path = link["url"].removeprefix("http://localhost")
    visitor = app.test_client()
    first = visitor.get(path + "/download", headers={"User-Agent": "Phone"})
    assert first.data == b"hello there"
    # The same client again (its claim): no second event.
    assert visitor.get(path + "/download").status_code == 200
    # Another client's download, close after: the same message.
    app.test_client().get(path + "/download", headers={"User-Agent": "Laptop"})
    assert send_due(app) == 0  # it waits for more downloads first
    make_due(app)
    assert send_due(app) == 1
    (body,) = receiver.bodies(made["secret"])
    assert body["type"] == "link.downloaded"
    fetches = body["data"].pop("fetches")
    assert body["data"] == {
        "link": {"id": link["id"], "downloads": 2, "max_downloads": None}
    }
    assert [(f["what"], f["address"], f["user_agent"]) for f in fetches] == [
        ("hello.txt", "127.0.0.1", "Phone"),
        ("hello.txt", "127.0.0.1", "Laptop"),
    ]
    (row,) = deliveries(app)
    assert row.status == "delivered" and row.attempts == 1
    assert row.last_status_code == 204
    headers = receiver.received[0][0]
    assert headers["webhook-id"] == row.message_id
    assert headers["Content-Type"] == "application/json"
    assert send_due(app) == 0  # nothing more to send


def test_a_guests_visit_is_one_message_and_a_full_request_is_told(
    app, client, token, receiver
):
    made = add_webhook(client, token, receiver.url)
    request_link = link_of(make_request(client, token, max_files=2))
    for number in (1, 2):
        answer, _ = guest_upload(client, request_link, b"x" * number, f"f{number}.txt")
        assert answer.status_code in (201, 204)
    # The visit's message waits a minute after its last file; "filled" is due.
    assert send_due(app) == 1
    assert [body["type"] for body in receiver.bodies(made["secret"])] == [
        "request.filled"
    ]
    make_due(app)
    assert send_due(app) == 1
    received = receiver.bodies(made["secret"])[1]
    assert received["type"] == "request.received"
    assert [item["filename"] for item in received["data"]["files"]] == [
        "f1.txt",
        "f2.txt",
    ]
    assert received["data"]["request"]["title"] == "Holiday photos"


def test_closing_a_request_is_told(app, client, token, receiver):
    made = add_webhook(client, token, receiver.url, ["request.closed"])
    request_id = make_request(client, token)["id"]
    closed = client.post(f"/requests/{request_id}/close", headers=bearer(token))
    assert closed.status_code == 200
    client.post(f"/requests/{request_id}/close", headers=bearer(token))
    send_due(app)
    assert [body["type"] for body in receiver.bodies(made["secret"])] == [
        "request.closed"
    ]


def test_links_and_requests_that_expired_unused_are_told_once(
    app, client, token, receiver
):
    made = add_webhook(client, token, receiver.url)
    file_id = uploaded(client, token)["id"]
    used = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(token))
    unused = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(token))
    path = used.get_json()["url"].removeprefix("http://localhost")
    app.test_client().get(path + "/download").close()
    make_request(client, token)
    with app.app_context():
        past = utcnow() - timedelta(seconds=1)
        db.session.execute(db.update(Share).values(expires_at=past))
        db.session.execute(db.update(UploadRequest).values(expires_at=past))
        db.session.commit()
    make_due(app)
    send_due(app)
    send_due(app)
    types = sorted(body["type"] for body in receiver.bodies(made["secret"]))
    assert types == ["link.downloaded", "link.expired_unused", "request.expired_unused"]
    expired = [
        body
        for body in receiver.bodies(made["secret"])
        if body["type"] == "link.expired_unused"
    ]
    assert expired[0]["data"]["link"]["id"] == unused.get_json()["id"]


def test_a_receiver_that_fails_is_tried_again_with_the_same_id(
    app, client, token, receiver
):
    made = add_webhook(client, token, receiver.url, ["request.closed"])
    request_id = make_request(client, token)["id"]
    client.post(f"/requests/{request_id}/close", headers=bearer(token))
    receiver.answers = [500]
    send_due(app)
    (row,) = deliveries(app)
    assert row.status == "pending" and row.attempts == 1
    assert row.last_status_code == 500 and row.last_error == "answered 500"
    wait = (row.next_attempt_at - row.last_attempt_at).total_seconds()
    assert 4 <= wait <= 6  # Standard Webhooks' first retry: 5 s
    assert send_due(app) == 0  # not due yet
    make_due(app)
    send_due(app)
    (row,) = deliveries(app)
    assert row.status == "delivered" and row.attempts == 2
    first, second = (headers["webhook-id"] for headers, _ in receiver.received)
    assert first == second == row.message_id
    assert len(receiver.bodies(made["secret"])) == 2


def test_a_receiver_that_is_down_then_back_gets_it(app, client, token):
    down = Receiver()
    url = down.url
    down.close()
    add_webhook(client, token, url, ["request.closed"])
    request_id = make_request(client, token)["id"]
    client.post(f"/requests/{request_id}/close", headers=bearer(token))
    send_due(app)
    (row,) = deliveries(app)
    assert row.status == "pending" and row.last_status_code is None
    assert "ConnectionRefusedError" in row.last_error


def test_after_every_attempt_it_fails_and_can_be_sent_again(
    app, client, token, receiver
):
    made = add_webhook(client, token, receiver.url, ["request.closed"])
    request_id = make_request(client, token)["id"]
    client.post(f"/requests/{request_id}/close", headers=bearer(token))
    receiver.answers = [503] * notifications.ATTEMPTS
    for _ in range(notifications.ATTEMPTS):
        make_due(app)
        send_due(app)
    (row,) = deliveries(app)
    assert row.status == "failed" and row.attempts == notifications.ATTEMPTS
    listed = client.get(
        f"/webhooks/{made['id']}/deliveries", headers=bearer(token)
    ).get_json()["items"]
    assert listed[0]["status"] == "failed" and listed[0]["last_status_code"] == 503
    assert listed[0]["body"]["type"] == "request.closed"
    again = client.post(
        f"/webhooks/{made['id']}/deliveries/{row.id}/send", headers=bearer(token)
    )
    assert again.status_code == 202
    send_due(app)
    (row,) = deliveries(app)
    assert row.status == "delivered"


def test_queued_deliveries_survive_a_restart(
    app, client, token, receiver, database_url
):
    made = add_webhook(client, token, receiver.url, ["request.closed"])
    request_id = make_request(client, token)["id"]
    client.post(f"/requests/{request_id}/close", headers=bearer(token))
    # Another process on the same database (the first one stopped before
    # sending anything) sends it.
    restarted = make_app(database_url, WEBHOOK_ALLOW_HOSTS=frozenset({"127.0.0.1"}))
    assert send_due(restarted) == 1
    assert len(receiver.bodies(made["secret"])) == 1


def test_two_instances_send_each_delivery_once(app, client, token, receiver):
    made = add_webhook(client, token, receiver.url, ["request.closed"])
    for number in range(12):
        request_id = make_request(client, token, title=f"r{number}")["id"]
        client.post(f"/requests/{request_id}/close", headers=bearer(token))
    other = make_app(
        app.config["SQLALCHEMY_DATABASE_URI"],
        WEBHOOK_ALLOW_HOSTS=frozenset({"127.0.0.1"}),
    )
    start = threading.Barrier(2)

    def run(instance):
        start.wait()
        send_due(instance)

    threads = [threading.Thread(target=run, args=(a,)) for a in (app, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [headers["webhook-id"] for headers, _ in receiver.received]
    assert len(ids) == len(set(ids)) == 12
    assert {row.status for row in deliveries(app)} == {"delivered"}
    assert len(receiver.bodies(made["secret"])) == 12


def test_a_name_that_resolves_to_a_private_address_is_refused_when_sent(
    app, client, token, receiver
):
    add_webhook(client, token, receiver.url, ["request.closed"])
    with app.app_context():
        hook = db.session.execute(db.select(notifications.Webhook)).scalar_one()
        hook.url = "https://localhost:1/hook"
        db.session.commit()
    request_id = make_request(client, token)["id"]
    client.post(f"/requests/{request_id}/close", headers=bearer(token))
    send_due(app)
    (row,) = deliveries(app)
    # A refusal will not change: not tried again.
    assert row.status == "failed" and row.attempts == 1
    assert row.last_error == "localhost is not a public address"
    assert receiver.received == []


def test_a_disabled_webhook_hears_nothing_and_its_owner_alone_sees_it(
    app, client, token, auth, receiver
):
    made = add_webhook(client, token, receiver.url, ["request.closed"])
    off = client.patch(
        f"/webhooks/{made['id']}", json={"enabled": False}, headers=bearer(token)
    )
    assert off.status_code == 200 and off.get_json()["enabled"] is False
    request_id = make_request(client, token)["id"]
    client.post(f"/requests/{request_id}/close", headers=bearer(token))
    assert deliveries(app) == []
    auth.create_user("bob")
    bob = auth.token("bob")
    for method, path in [
        ("patch", f"/webhooks/{made['id']}"),
        ("delete", f"/webhooks/{made['id']}"),
        ("get", f"/webhooks/{made['id']}/deliveries"),
    ]:
        answer = getattr(client, method)(
            path, json={"enabled": True}, headers=bearer(bob)
        )
        assert answer.status_code == 404
        assert answer.get_json() == {"message": "Webhook not found"}
    assert (
        client.delete(f"/webhooks/{made['id']}", headers=bearer(token)).status_code
        == 204
    )


def test_an_api_token_cannot_manage_webhooks(client, token):
    made = client.post(
        "/tokens",
        json={"name": "t", "scopes": ["files:read", "files:write", "shares:write"]},
        headers=bearer(token),
    ).get_json()["token"]
    answer = client.get("/webhooks", headers=bearer(made))
    assert answer.status_code == 403


def test_the_page_adds_one_and_shows_its_secret_once(app, client, token, receiver):
    added = client.post(
        "/webhooks",
        data={"url": receiver.url, "events": ["request.closed", "link.downloaded"]},
        headers={**HTML, **bearer(token)},
    )
    assert added.status_code == 303
    page = client.get("/webhooks", headers={**HTML, **bearer(token)})
    text = page.get_data(as_text=True)
    assert "Its signing secret" in text and 'value="whsec_' in text
    assert "hears link.downloaded, request.closed" in text
    again = client.get("/webhooks", headers={**HTML, **bearer(token)})
    assert "whsec_" not in again.get_data(as_text=True)
    with app.app_context():
        hook = db.session.execute(db.select(notifications.Webhook)).scalar_one()
    switched = client.post(
        f"/webhooks/{hook.id}/state",
        data={"enabled": "false"},
        headers={**HTML, **bearer(token)},
    )
    assert switched.status_code == 303
    page = client.get("/webhooks", headers={**HTML, **bearer(token)})
    assert "Switch on" in page.get_data(as_text=True)


def test_a_delivery_body_is_the_json_it_says(app, client, token, receiver):
    add_webhook(client, token, receiver.url, ["request.closed"])
    request_id = make_request(client, token)["id"]
    client.post(f"/requests/{request_id}/close", headers=bearer(token))
    send_due(app)
    body = json.loads(receiver.received[0][1])
    assert set(body) == {"type", "timestamp", "data"}
    assert body["data"]["request"]["id"] == request_id


def readme_receiver(secret: str):
    """The README's example receiver (its Python block under Notifications),
    run as written, with ``secret`` in its environment: its Flask app."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("\n## Notifications\n") :]
    source = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {"__name__": "readme_receiver"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WEBHOOK_SECRET", secret)
        exec(compile(source, "<README.md receiver>", "exec"), namespace)  # noqa: S102
    return namespace["app"]


def test_the_readmes_receiver_verifies_drops_repeats_and_refuses_forgeries(
    app, client, token
):
    receiver = Receiver()  # only for its free port
    url = receiver.url.replace("/hook", "/lockbox")
    receiver.close()
    made = add_webhook(client, token, url, ["request.closed"])
    example = readme_receiver(made["secret"])
    served = make_server("127.0.0.1", int(url.split(":")[2].split("/")[0]), example)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        request_id = make_request(client, token)["id"]
        client.post(f"/requests/{request_id}/close", headers=bearer(token))
        send_due(app)
        (row,) = deliveries(app)
        assert row.status == "delivered" and row.last_status_code == 204
        # Sent again (the same webhook-id): accepted, not handled twice.
        with app.app_context():
            notifications.send_again(db.session.get(Delivery, row.id))
        send_due(app)
        assert deliveries(app)[0].attempts == 2
        # A forgery, and a replay of a day-old message, are refused.
        forged = example.test_client().post(
            "/lockbox",
            data=row.payload,
            headers={
                "webhook-id": row.message_id,
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": "v1,AAAA",
            },
        )
        assert forged.status_code == 401
        old = int(time.time()) - 86400
        signature = Verifier(made["secret"]).sign(
            row.message_id, datetime.fromtimestamp(old, UTC), row.payload
        )
        replayed = example.test_client().post(
            "/lockbox",
            data=row.payload,
            headers={
                "webhook-id": row.message_id,
                "webhook-timestamp": str(old),
                "webhook-signature": signature,
            },
        )
        assert replayed.status_code == 401
    finally:
        served.shutdown()


def test_a_flood_of_downloads_is_a_few_messages_listing_a_hundred(
    app, client, token, receiver
):
    made = add_webhook(client, token, receiver.url, ["link.downloaded"])
    file_id = uploaded(client, token, b"x", "x.txt")["id"]
    link = client.post(
        f"/files/{file_id}/shares", json={}, headers=bearer(token)
    ).get_json()
    path = link["url"].removeprefix("http://localhost")
    for _ in range(120):  # each a new client: each counts
        app.test_client().get(path + "/files/1", headers={"Range": "bytes=0-0"})
    assert len(deliveries(app)) == 1
    make_due(app)
    send_due(app)
    (body,) = receiver.bodies(made["secret"])
    assert body["data"]["link"]["downloads"] == 120
    assert len(body["data"]["fetches"]) == notifications.MAX_LISTED


def test_a_receiver_that_trickles_its_answer_does_not_hold_up_the_others(
    app, client, token, receiver
):
    """An attempt ends within twice WEBHOOK_TIMEOUT_SECONDS, and a slow
    receiver holds up one of the senders, not the others' messages."""
    app.config["WEBHOOK_TIMEOUT_SECONDS"] = 1
    with socket.create_server(("127.0.0.1", 0)) as slow:
        slow_url = f"http://127.0.0.1:{slow.getsockname()[1]}/slow"
        add_webhook(client, token, slow_url, ["request.closed"])
        made = add_webhook(client, token, receiver.url, ["request.closed"])
        request_id = make_request(client, token)["id"]
        client.post(f"/requests/{request_id}/close", headers=bearer(token))
        started = time.monotonic()
        send_due(app)  # the slow one never answers: accepted, never served
        took = time.monotonic() - started
    assert took < 5
    assert len(receiver.bodies(made["secret"])) == 1
    slow_row = next(row for row in deliveries(app) if row.last_status_code is None)
    assert slow_row.status == "pending" and "timed out" in slow_row.last_error
