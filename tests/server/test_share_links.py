"""Share links and personal access tokens against the real server (gunicorn),
on SQLite and MariaDB: downloads counted under concurrency, revocation seen
at once, and neither link tokens nor access tokens in the logs."""

import hashlib
import threading
import time
from urllib.parse import urlsplit

import requests

from helpers import bearer, live_share, live_upload, random_bytes, sign_in

CONTENT = random_bytes(256 * 1024, seed=21)


def upload(server, token) -> int:
    """Alice uploads CONTENT; the new file's id."""
    return live_upload(server, token, "shared.bin", CONTENT)


make_share = live_share


def test_of_concurrent_last_downloads_exactly_one_succeeds(server):
    token = sign_in(server)["token"]
    file_id = upload(server, token)
    rounds, racers = 3, 6
    for _ in range(rounds):
        share = make_share(server, token, file_id, max_downloads=1)
        url = share["url"] + "/download"
        start = threading.Barrier(racers)
        answers = [None] * racers

        def race(index, url=url, start=start, answers=answers):
            start.wait()
            answer = requests.get(url, timeout=30)
            answers[index] = (answer.status_code, answer.content)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200] + [410] * (racers - 1), statuses
        winner = next(body for status, body in answers if status == 200)
        assert hashlib.sha256(winner).digest() == hashlib.sha256(CONTENT).digest()
        listed = requests.get(
            f"{server.url}/files/{file_id}/shares", headers=bearer(token), timeout=10
        ).json()["items"]
        assert (
            next(item for item in listed if item["id"] == share["id"])["downloads"] == 1
        )


def test_a_revoked_link_stops_at_once_for_every_worker(server):
    token = sign_in(server)["token"]
    file_id = upload(server, token)
    share = make_share(server, token, file_id)
    url = share["url"] + "/download"
    assert requests.get(url, timeout=10).status_code == 200
    revoked = requests.delete(
        f"{server.url}/shares/{share['id']}", headers=bearer(token), timeout=10
    )
    assert revoked.status_code == 204
    # Many requests right after, spread over the server's threads: none gets in.
    statuses = {requests.get(url, timeout=10).status_code for _ in range(20)}
    assert statuses == {410}


def test_the_access_log_records_what_gunicorn_sent_whole_or_cut_short(server):
    token = sign_in(server)["token"]
    # Larger than what the kernel's socket buffers hold: a client that goes
    # early really leaves bytes unsent.
    content = random_bytes(32 * 1024 * 1024, seed=22)
    file_id = live_upload(server, token, "big.bin", content)
    share = make_share(server, token, file_id)
    url = share["url"] + "/download"
    whole = requests.get(url, headers={"User-Agent": "whole/1"}, timeout=60)
    assert whole.content == content
    # A client that reads a little and goes.
    with requests.get(
        url, headers={"User-Agent": "cut/1"}, stream=True, timeout=30
    ) as cut:
        cut.raw.read(1024)
    accesses = f"{server.url}/shares/{share['id']}/accesses"
    deadline = time.monotonic() + 10
    rows = []
    while time.monotonic() < deadline and len(rows) < 2:
        rows = requests.get(accesses, headers=bearer(token), timeout=10).json()["items"]
        time.sleep(0.1)
    by_agent = {row["user_agent"]: row for row in rows}
    assert by_agent["whole/1"]["bytes"] == len(content)
    assert by_agent["whole/1"]["completed"] is True
    assert by_agent["cut/1"]["completed"] is False
    assert by_agent["cut/1"]["bytes"] < len(content)
    assert "Traceback" not in server.output_so_far()


def test_link_tokens_and_access_tokens_never_reach_the_logs(server):
    session = sign_in(server)["token"]
    file_id = upload(server, session)
    share = make_share(server, session, file_id, password="a share password")
    link = urlsplit(share["url"]).path
    link_token = link.removeprefix("/s/")
    made = requests.post(
        server.url + "/tokens",
        json={"name": "logs", "scopes": ["files:read"]},
        headers=bearer(session),
        timeout=10,
    )
    pat = made.json()["token"]
    asked = [
        requests.get(f"{server.url}/files", params={"token": pat}, timeout=10),
        requests.get(f"{server.url}/files", headers=bearer(pat), timeout=10),
        requests.get(f"{server.url}{link}", timeout=10),
        requests.get(
            f"{server.url}{link}/download", auth=("", "wrong password"), timeout=10
        ),
        requests.get(
            f"{server.url}{link}/download", auth=("", "a share password"), timeout=10
        ),
        requests.get(
            f"{server.url}/files/{file_id}/download", headers=bearer(pat), timeout=10
        ),
        # A request line gunicorn itself refuses, with both secrets in it.
        requests.get(f"{server.url}{link}/download?x={pat}" + "y" * 9000, timeout=10),
    ]
    assert [answer.status_code for answer in asked] == [
        200,
        200,
        401,
        401,
        200,
        200,
        414,
    ]
    expected = ["/s/[redacted]/download 200", f"GET /files/{file_id}/download 200"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
        line in server.output_so_far() for line in expected
    ):
        time.sleep(0.05)
    output = server.output_so_far()
    # Streamed downloads get their line too, once the last byte is out.
    assert all(line in output for line in expected)
    assert link_token not in output and link_token.split(".")[0] not in output
    assert pat not in output and pat[4:20] not in output
