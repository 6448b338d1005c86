"""The shipped nginx settings (deploy/nginx/lockbox-proxy.conf) in front of
gunicorn: slow clients, streamed uploads, and nginx's own answers."""

import time

import pytest
import requests

from harness.server import LiveServer, Nginx
from helpers import (
    MIB,
    SECRET_KEY,
    AuthActions,
    bearer,
    make_app,
    random_bytes,
    raw_exchange,
    sign_in,
    slow_clients,
    time_to_sign_in,
)

# nginx comes from Debian's package, which `make test` installs
# (scripts/system-deps --test).
pytestmark = pytest.mark.slow

# gunicorn's threads in these tests: far fewer than the slow clients.
THREADS = 4
SLOW_CLIENTS = 40


@pytest.fixture
def proxied(tmp_path):
    """gunicorn (one worker, four threads) behind nginx, on a SQLite database
    with alice: what is tested here is the proxy, not the database."""
    url = f"sqlite:///{tmp_path / 'lockbox.db'}"
    app = make_app(url)
    AuthActions(app, app.test_client()).create_user()
    env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": url, "TRUSTED_PROXIES": "1"}
    with LiveServer(env, threads=THREADS) as server:
        with Nginx(tmp_path, [server.port]) as nginx:
            nginx.app = server
            yield nginx


def test_slow_clients_do_not_starve_the_app_behind_nginx(proxied):
    attackers = slow_clients(proxied.port, SLOW_CLIENTS)
    try:
        time.sleep(1)
        # Everybody else signs in as usual, through the same nginx.
        timings = [time_to_sign_in(proxied.url, timeout=5) for _ in range(10)]
        assert None not in timings, timings
        assert max(timings) < 2, timings
    finally:
        for sock in attackers:
            sock.close()


def test_the_same_slow_clients_starve_gunicorn_without_nginx(proxied):
    # Why gunicorn is never exposed directly: a handful of slow clients, one
    # per thread, and nobody else gets an answer.
    attackers = slow_clients(proxied.app.port, 2 * THREADS)
    try:
        time.sleep(1)
        assert time_to_sign_in(proxied.app.url, timeout=3) is None
    finally:
        for sock in attackers:
            sock.close()


def test_nginx_gives_up_on_a_client_that_stalls(proxied):
    # The header and body timeouts (10 s) end a stalled request: nginx answers
    # or closes; it never waits forever.
    [sock] = slow_clients(proxied.port, 1)
    sock.settimeout(30)
    started = time.monotonic()
    with sock:
        while sock.recv(65536):
            pass
    assert 8 < time.monotonic() - started < 20


def test_uploads_stream_through_nginx_and_arrive_whole(proxied):
    token = sign_in(proxied)["token"]
    content = bytes(range(256)) * 40_000  # 10 MB, more than any nginx buffer
    response = requests.post(
        proxied.url + "/upload",
        headers={"Authorization": f"Bearer {token}"},
        files={"inputFile": ("big.bin", content)},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    download = requests.get(
        f"{proxied.url}/files/{response.json()['id']}/download",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert download.content == content
    # The client's address reached the app through X-Forwarded-For.
    assert "127.0.0.1" in proxied.app.output_so_far()


def test_a_guests_upload_through_a_request_link_streams_through_nginx(proxied):
    token = sign_in(proxied)["token"]
    made = requests.post(
        proxied.url + "/requests",
        json={"title": "Scans"},
        headers=bearer(token),
        timeout=30,
    )
    assert made.status_code == 201, made.text
    content = random_bytes(3 * MIB, seed=7)  # past every nginx body limit
    sent = requests.post(
        made.json()["url"] + "/upload",
        files={"inputFile": ("scan.pdf", content)},
        timeout=60,
    )
    assert sent.status_code == 201, sent.text
    files = requests.get(proxied.url + "/files", headers=bearer(token), timeout=30)
    file_id = files.json()["items"][0]["id"]
    download = requests.get(
        f"{proxied.url}/files/{file_id}/download", headers=bearer(token), timeout=60
    )
    assert download.content == content


def test_a_one_time_link_is_not_drained_behind_nginx(proxied):
    """nginx reads ahead of a slow client and closes its side when the client
    goes: what the app sees of a broken-off download must not give its count
    back, and only the client holding the claim resumes."""
    token = sign_in(proxied)["token"]
    content = random_bytes(8 * MIB, seed=4)
    stored = requests.post(
        proxied.url + "/upload",
        headers=bearer(token),
        files={"inputFile": ("big.bin", content)},
        timeout=60,
    )
    share = requests.post(
        f"{proxied.url}/files/{stored.json()['id']}/shares",
        json={"max_downloads": 1},
        headers=bearer(token),
        timeout=10,
    ).json()
    url = share["url"] + "/download"
    assert url.startswith(proxied.url)
    holder = requests.Session()
    cut = len(content) * 85 // 100
    for attempt in range(4):
        client = holder if attempt == 0 else requests.Session()
        with client.get(url, stream=True, timeout=30) as answer:
            if attempt:
                assert answer.status_code == 410, attempt
                continue
            assert answer.status_code == 200
            received = b""
            for piece in answer.iter_content(64 * 1024):
                received += piece
                if len(received) >= cut:
                    break  # the connection is dropped with most of the file read
    rest = holder.get(url, headers={"Range": f"bytes={cut}-"}, timeout=30)
    assert rest.status_code == 206 and rest.content == content[cut:]
    anyone = requests.get(url, headers={"Range": "bytes=0-"}, timeout=30)
    assert anyone.status_code == 410


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /files?" + b"q" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (
            b"GET /files HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 20_000 + b"\r\n\r\n",
            431,
        ),
        (
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n",
            413,
        ),
    ],
    ids=["long-url", "long-header", "big-body"],
)
def test_answers_from_nginx_itself_are_json_errors(proxied, request_bytes, status):
    head, body = raw_exchange(proxied.port, request_bytes)
    assert head.split(b" ")[1] == str(status).encode(), head
    assert b"Content-Type: application/json" in head
    assert b'"message"' in body


def test_a_dead_app_is_a_json_502_through_nginx(proxied):
    proxied.app.__exit__(None, None, None)
    response = requests.get(proxied.url + "/files", timeout=10)
    assert response.status_code == 502
    assert response.json() == {"message": "The app is not answering; try again"}
    assert response.headers["Retry-After"] == "5"
