"""Upload requests under concurrency, over real HTTP (gunicorn, 8 threads):
guests sending at the same moment never pass a request's caps together."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from helpers import bearer, sign_in, tus_headers, tus_metadata

pytestmark = pytest.mark.slow

GUESTS = 6


def ask(server, token, **caps) -> str:
    """A new upload request with these caps; its link."""
    answer = requests.post(
        server.url + "/requests",
        json={"title": "At once", **caps},
        headers=bearer(token),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["url"]


def all_at_once(link: str, length: int) -> list[int]:
    """GUESTS guests create an upload of ``length`` bytes at the same moment;
    the statuses, sorted."""
    meeting = threading.Barrier(GUESTS)

    def create(number):
        meeting.wait(timeout=30)
        return requests.post(
            link + "/uploads",
            headers=tus_headers(
                Upload_Length=length,
                Upload_Metadata=tus_metadata(filename=f"guest-{number}.bin"),
            ),
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(GUESTS) as pool:
        return sorted(pool.map(create, range(GUESTS)))


def test_guests_at_once_get_exactly_the_files_a_request_takes(server):
    token = sign_in(server)["token"]
    link = ask(server, token, max_files=2)
    assert all_at_once(link, 100) == [201, 201] + [410] * (GUESTS - 2)
    assert "Traceback" not in server.output_so_far()


def test_guests_at_once_get_exactly_the_bytes_a_request_takes(server):
    token = sign_in(server)["token"]
    link = ask(server, token, max_bytes=250)
    assert all_at_once(link, 100) == [201, 201] + [413] * (GUESTS - 2)
    assert "Traceback" not in server.output_so_far()
