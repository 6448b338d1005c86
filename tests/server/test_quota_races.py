"""Quotas under concurrency, over real HTTP: uploads sent at the same moment,
whatever way they come in, never store more than the account may keep."""

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from helpers import (
    BOUNDARY,
    MIB,
    OFFSET_STREAM,
    bearer,
    multipart_pieces,
    sign_in,
    tus_headers,
)

pytestmark = pytest.mark.slow

QUOTA = 4 * MIB
# Each upload alone fits; any two together do not.
EACH = 3 * 1000 * 1000


@pytest.fixture
def quota_server(server, runner):
    """The server, with alice's quota at 4 MiB; her token."""
    result = runner.invoke(args=["users", "set-quota", "--", "alice", str(QUOTA)])
    assert result.exit_code == 0, result.output
    return server, sign_in(server)["token"]


def used_bytes(server, token) -> int:
    """What GET /account says alice's files take."""
    response = requests.get(server.url + "/account", headers=bearer(token), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["used_bytes"]


class MeetHalfway:
    """A request body of ``size`` bytes, read by the client 64 KiB at a time,
    that waits at half way until every other body has got there too: the
    uploads are all in flight at once, each past its start."""

    def __init__(self, size: int, meeting: threading.Barrier, head=b"", tail=b""):
        self.pieces = [head]
        left = size
        while left:
            self.pieces.append(b"x" * min(64 * 1024, left))
            left -= len(self.pieces[-1])
        self.pieces.append(tail)
        self.length = sum(map(len, self.pieces))
        self.meeting, self.halfway = meeting, len(self.pieces) // 2

    def __len__(self) -> int:
        """The whole length: requests then sends it with Content-Length."""
        return self.length

    def __iter__(self):
        for number, piece in enumerate(self.pieces):
            if number == self.halfway:
                try:
                    self.meeting.wait(timeout=30)
                except threading.BrokenBarrierError:
                    pass  # another upload was refused before half way
            yield piece

    def chunked(self):
        """The body as a generator: requests sends it chunked, no length."""
        return iter(self)


def abort_others(meeting: threading.Barrier, send):
    """Run ``send``; whatever its answer, no other upload waits for this one."""
    try:
        return send()
    finally:
        meeting.abort()


def test_chunked_form_uploads_sent_together_stay_within_the_quota(quota_server):
    server, token = quota_server
    meeting = threading.Barrier(2)
    head, _ = next(multipart_pieces(0, 0, hashlib.sha256()))
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def form_upload():
        body = MeetHalfway(EACH, meeting, head, tail)
        return requests.post(
            server.url + "/upload",
            data=body.chunked(),
            headers=bearer(
                token, **{"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
            ),
            timeout=120,
        )

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: abort_others(meeting, form_upload), [1, 2]))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201, 413], [answer.text for answer in answers]
    assert used_bytes(server, token) == EACH


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_deferred_tus_uploads_patched_together_stay_within_the_quota(
    quota_server, framing
):
    server, token = quota_server
    locations = []
    for _ in range(3):
        created = requests.post(
            server.url + "/uploads",
            headers=tus_headers(token, Upload_Defer_Length=1),
            timeout=30,
        )
        assert created.status_code == 201, created.text
        locations.append(created.headers["Location"])
    meeting = threading.Barrier(3)

    def patch(location):
        body = MeetHalfway(EACH, meeting)
        headers = tus_headers(Upload_Offset=0, Content_Type=OFFSET_STREAM)
        data = body if framing == "content-length" else body.chunked()
        return requests.patch(location, data=data, headers=headers, timeout=120)

    with ThreadPoolExecutor(3) as pool:
        answers = list(
            pool.map(lambda url: abort_others(meeting, lambda: patch(url)), locations)
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [204, 413, 413], [answer.text for answer in answers]
    stored = 0
    for location in locations:
        head = requests.head(location, headers=tus_headers(), timeout=30)
        if head.status_code == 200:
            stored += int(head.headers["Upload-Offset"])
    assert stored == EACH
    assert used_bytes(server, token) <= QUOTA
