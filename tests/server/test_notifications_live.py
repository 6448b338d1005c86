"""Webhooks against the real server (gunicorn, two workers), on SQLite and
MariaDB: the workers' own sender threads deliver a link's downloads within
seconds of their batch, once, signed; a delivery queued while the receiver
is down and the server stopped is sent by the next server, once the
receiver is back."""

import time

import pytest
import requests

from harness.server import LiveServer
from helpers import (
    SECRET_KEY,
    SHARED_LIMITS,
    bearer,
    live_share,
    live_upload,
    sign_in,
)
from test_notifications import Receiver

pytestmark = pytest.mark.slow


def notified_env(database_url) -> dict:
    """A server whose senders look every second and may send to 127.0.0.1."""
    return {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database_url,
        "WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "NOTIFY_POLL_SECONDS": "1",
        **SHARED_LIMITS,
    }


def wait_for(condition, seconds=20.0) -> bool:
    """Whether ``condition()`` came true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def add_webhook(server, token, url) -> dict:
    answer = requests.post(
        f"{server.url}/webhooks",
        json={"url": url, "events": ["link.downloaded"]},
        headers=bearer(token),
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_the_workers_send_each_event_once_and_a_restart_loses_none(
    app, auth, database_url
):
    auth.create_user()
    receiver = Receiver()
    try:
        with LiveServer(notified_env(database_url), workers=2) as server:
            token = sign_in(server)["token"]
            made = add_webhook(server, token, receiver.url)
            file_id = live_upload(server, token, "a.txt", b"hello")
            link = live_share(server, token, file_id)
            download = link["url"].removeprefix(server.url) + "/download"
            for _ in range(3):  # three visitors, close together: one message
                assert requests.get(server.url + download, timeout=10).ok
            # It waits LINK_BATCH_SECONDS (10) for more downloads first.
            assert wait_for(lambda: len(receiver.received) >= 1, seconds=30)
            time.sleep(2.5)  # more passes of both workers: still one
            (body,) = receiver.bodies(made["secret"])
            assert body["data"]["link"]["downloads"] == 3
            assert len(body["data"]["fetches"]) == 3
            url = receiver.url
        receiver.close()
        # The receiver is down and the server stops with a delivery queued.
        with LiveServer(notified_env(database_url)) as server:
            assert requests.get(server.url + download, timeout=10).ok
            time.sleep(12)  # due, and tried against the receiver that is down
        receiver = Receiver.on(url)
        with LiveServer(notified_env(database_url)) as server:
            requests.get(f"{server.url}/livez", timeout=10)  # starts its sender
            assert wait_for(lambda: len(receiver.received) == 1)
            (body,) = receiver.bodies(made["secret"])
            assert body["data"]["link"]["downloads"] == 4
            listed = requests.get(
                f"{server.url}/webhooks/{made['id']}/deliveries",
                headers=bearer(sign_in(server)["token"]),
                timeout=10,
            ).json()["items"]
            assert [item["status"] for item in listed] == ["delivered"] * 2
            assert listed[0]["attempts"] >= 2
        assert "Traceback" not in server.output
    finally:
        receiver.close()
