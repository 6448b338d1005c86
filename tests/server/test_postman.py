"""The Postman collection in docs/postman, run with newman against the real server."""

import json
import os
import re
import subprocess

import pytest

from harness.server import ROOT, LiveServer
from helpers import PASSWORD, SECRET_KEY, AuthActions, empty_tables, make_app

pytestmark = pytest.mark.slow

COLLECTION = ROOT / "docs" / "postman" / "lockbox.postman_collection.json"
NEWMAN = ROOT / "node_modules" / ".bin" / "newman"
REPORT = ROOT / "test-artifacts" / "newman.json"
# Like the MariaDB half of the suite: a missing tool fails in CI, skips elsewhere.
REQUIRE_NEWMAN = (
    os.environ.get("CI") == "true" or os.environ.get("LOCKBOX_REQUIRE_MYSQL") == "1"
)
USERNAME = "postman-user"
# newman's cli reporter colours its failure table even with --color off.
ANSI_ESCAPE_RE = re.compile(r"\x1b\[[0-9;]*m")


def requests_in(items: list) -> list:
    """The collection's requests, in run order, folders flattened."""
    found = []
    for item in items:
        if "item" in item:
            found += requests_in(item["item"])
        else:
            found.append(item)
    return found


def assertions_in(request: dict) -> int:
    """How many ``pm.test`` calls a request's test script makes."""
    return sum(
        len(re.findall(r"\bpm\.test\(", "\n".join(event["script"]["exec"])))
        for event in request.get("event", [])
        if event["listen"] == "test"
    )


@pytest.fixture
def newman():
    """The newman that ``npm ci`` installs in this checkout."""
    if not NEWMAN.exists():
        message = f"{NEWMAN.relative_to(ROOT)} is missing: run `npm ci` (or make test)"
        if REQUIRE_NEWMAN:
            pytest.fail(message)
        pytest.skip(message)
    return NEWMAN


@pytest.fixture
def site(tmp_path):
    """gunicorn on a fresh SQLite database with one user, an administrator."""
    url = f"sqlite:///{tmp_path / 'lockbox.db'}"
    app = make_app(url)
    AuthActions(app, app.test_client()).create_user(USERNAME)
    # An administrator, as `make run`'s first user is: the collection visits
    # the admin area.
    app.test_cli_runner().invoke(args=["users", "set-role", USERNAME, "admin"])
    with LiveServer({"SECRET_KEY": SECRET_KEY, "DATABASE_URL": url}) as server:
        yield server
    empty_tables(app)


def test_the_postman_collection_passes(newman, site):
    collection = json.loads(COLLECTION.read_text())
    requests = requests_in(collection["item"])
    expected_assertions = sum(assertions_in(request) for request in requests)
    assert len(requests) >= 13 and expected_assertions >= len(requests)

    REPORT.parent.mkdir(exist_ok=True)
    REPORT.unlink(missing_ok=True)
    # package.json's "postman" script (newman run <the collection>), as the
    # README tells people to run it, with this server's address and user.
    # fmt: off
    command = [
        "npm", "run", "--silent", "postman", "--",
        "--env-var", f"baseUrl={site.url}",
        "--env-var", f"username={USERNAME}",
        "--env-var", f"password={PASSWORD}",
        "--reporters", "cli,json",
        "--reporter-json-export", str(REPORT),
        "--timeout-request", "10000",
        "--color", "off",
        "--disable-unicode",
    ]
    # fmt: on
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    output = ANSI_ESCAPE_RE.sub("", result.stdout + result.stderr)
    assert result.returncode == 0, output

    run = json.loads(REPORT.read_text())["run"]
    stats = run["stats"]
    assert run["failures"] == [], output
    assert stats["assertions"]["failed"] == 0, output
    assert stats["testScripts"]["failed"] == 0, output
    assert stats["requests"]["failed"] == 0, output
    # Everything in the collection ran: a run that silently skipped requests or
    # tests must not pass.
    assert stats["requests"]["total"] == len(requests), output
    assert stats["assertions"]["total"] == expected_assertions, output
    executed = [execution["item"]["name"] for execution in run["executions"]]
    assert executed == [request["name"] for request in requests]
