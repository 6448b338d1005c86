"""GET /metrics under the real server, ``gunicorn -c gunicorn.conf.py``: the
numbers of every worker added up, a directory for them that goes with the
server, and a bounded number of series whatever the requests."""

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from harness.server import LiveServer
from helpers import SECRET_KEY, SHARED_LIMITS, AuthActions, bearer, make_app

pytestmark = pytest.mark.slow

METRICS_TOKEN = "a-metrics-token-for-the-tests"
LIVEZ = 'lockbox_requests_total{method="GET",route="/livez",status="200"}'
DIRECTORY_LINE = re.compile(r"Metrics of every worker: (\S+)")


def value_of(text: str, series: str) -> float:
    """A sample's value in the Prometheus text format (0 when absent)."""
    found = re.search(rf"(?m)^{re.escape(series)} (\S+)$", text)
    return float(found[1]) if found else 0.0


def scrape(server) -> str:
    """GET /metrics with the token."""
    answer = requests.get(
        server.url + "/metrics", headers=bearer(METRICS_TOKEN), timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.text


@pytest.fixture
def shipped_env(tmp_path) -> dict:
    """The shipped settings on a fresh SQLite database with alice, metrics on,
    limits in Redis (several workers), and no metrics directory given."""
    url = f"sqlite:///{tmp_path / 'lockbox.db'}"
    AuthActions(make_app(url), None).create_user()
    return {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": url,
        "METRICS_TOKEN": METRICS_TOKEN,
        **SHARED_LIMITS,
        "PROMETHEUS_MULTIPROC_DIR": None,
    }


def test_metrics_add_up_every_workers_requests_and_leave_nothing_behind(
    shipped_env, tmp_path
):
    env = {**shipped_env, "WEB_CONCURRENCY": "3"}
    live = LiveServer(env, shipped=True, extra_args=["-c", "gunicorn.conf.py"])
    with live:
        workers = live.worker_pids()
        assert len(workers) == 3
        # New connections, six at a time: the workers share them out.
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(
                    lambda _: requests.get(live.url + "/livez", timeout=30).status_code,
                    range(90),
                )
            )
        assert set(answers) == {200}
        assert value_of(scrape(live), LIVEZ) == 90
        found = DIRECTORY_LINE.search(live.output_so_far())
        assert found, live.output_so_far()
        directory = Path(found[1])
        # Each worker's own count, read from its files alone: several of them
        # served, and the scrape added them all up.
        counts = []
        for pid in workers:
            alone = tmp_path / f"worker-{pid}"
            alone.mkdir()
            for name in directory.glob(f"*_{pid}.db"):
                shutil.copy(name, alone)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(alone))
            counts.append(value_of(generate_latest(registry).decode(), LIVEZ))
        assert sum(counts) == 90 and sum(1 for n in counts if n) >= 2, counts
    # The directory the server made for its workers goes with it.
    assert not directory.exists()


def test_invented_methods_fold_into_one_series(shipped_env, tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {
        **shipped_env,
        "WEB_CONCURRENCY": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    with LiveServer(env, shipped=True) as live:
        with requests.Session() as session:
            for number in range(300):
                answer = session.request(f"X{number:04d}ABC", live.url + "/livez")
                assert answer.status_code == 405
        text = scrape(live)
    methods = set(re.findall(r'lockbox_requests_total\{method="([^"]*)"', text))
    assert methods <= {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
        "other",
    }
    other = 'lockbox_requests_total{method="other",route="<unmatched>",status="405"}'
    assert value_of(text, other) == 300
