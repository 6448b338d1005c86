"""Sign-in and share-password limits under concurrency, over real HTTP: a
limit of N allows at most N password checks however many guesses arrive at
once, in one worker's memory or shared by several workers through Redis."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness.server import LiveServer
from helpers import (
    SECRET_KEY,
    SHARED_LIMITS,
    bearer,
    sign_in,
)

pytestmark = pytest.mark.slow

GUESSES = 40
LIMIT = 10  # the default, per username and per link


def statuses_of_guesses(send) -> list[int]:
    """``send()`` GUESSES times at once (40 threads); the statuses."""
    with ThreadPoolExecutor(GUESSES) as pool:
        return sorted(pool.map(lambda _: send().status_code, range(GUESSES)))


@pytest.fixture(params=["memory, 1 worker", "redis, 2 workers"])
def limited_server(request, app, auth, database_url):
    """gunicorn with 8 threads a worker, and a user of its own (a fresh name,
    so that no other run's counts in Redis can interfere): (server, name)."""
    name = f"guess-{uuid.uuid4().hex[:12]}"
    auth.create_user(name)
    env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": database_url}
    workers = 1
    if request.param.startswith("redis"):
        env, workers = {**env, **SHARED_LIMITS}, 2
    with LiveServer(env, workers=workers, threads=8) as live:
        yield live, name


def test_concurrent_wrong_passwords_get_at_most_the_limits_checks(limited_server):
    server, name = limited_server

    def guess():
        return requests.get(
            server.url + "/login", auth=(name, "wrong password"), timeout=60
        )

    statuses = statuses_of_guesses(guess)
    # Each 401 is a password checked; the rest were refused unchecked.
    assert statuses.count(401) == LIMIT, statuses
    assert statuses.count(429) == GUESSES - LIMIT, statuses


def test_concurrent_wrong_share_passwords_get_at_most_the_limits_checks(
    limited_server,
):
    server, name = limited_server
    token = sign_in(server, name)["token"]
    uploaded = requests.post(
        server.url + "/upload",
        files={"inputFile": ("secret.txt", b"guarded")},
        headers=bearer(token),
        timeout=30,
    )
    file_id = uploaded.json()["id"]
    share = requests.post(
        f"{server.url}/files/{file_id}/shares",
        json={"password": "the right one"},
        headers=bearer(token),
        timeout=30,
    ).json()

    def guess():
        return requests.get(
            share["url"] + "/download", auth=("", "a wrong one"), timeout=60
        )

    statuses = statuses_of_guesses(guess)
    assert statuses.count(401) == LIMIT, statuses
    assert statuses.count(429) == GUESSES - LIMIT, statuses
