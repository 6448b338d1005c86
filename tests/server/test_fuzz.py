"""Fuzz the running app with schemathesis, driven by its own /openapi.json.

Every operation gets generated valid and invalid requests, and every check
schemathesis has runs (its default: all of them, but for the one
tests/server/schemathesis.toml turns off for the upload): every response must be one
the description documents (status, content type, body schema) and none may be
a 5xx. Signing out and refreshing end a sign-in, so they run on their own, with
tokens of another user; the admin area runs last, with an administrator's
token (it may disable or delete anyone); the rest runs with one valid access
token.
"""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.server import ROOT, LiveServer
from helpers import (
    PASSWORD,
    SECRET_KEY,
    SHARED_LIMITS,
    AuthActions,
    bearer,
    empty_tables,
    make_app,
)

CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
ARTIFACTS = ROOT / "test-artifacts" / "schemathesis"
SEED = 20261130  # fixed, so that a failure in CI replays locally

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "mysqlclient"])
def fuzz_site(request, tmp_path_factory):
    """gunicorn on a fresh database with alice and bob; sign-in limits raised,
    since the fuzzer signs in with wrong credentials many times a minute."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'lockbox.db'}"
    else:
        url = request.getfixturevalue("mysql_database")
    app = make_app(url)
    client = app.test_client()
    auth = AuthActions(app, client)
    auth.create_user("alice")
    auth.create_user("bob")
    auth.create_user("carol")
    app.test_cli_runner().invoke(args=["users", "set-role", "carol", "admin"])
    env = {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": url,
        "LOGIN_LIMIT_PER_USERNAME": "100000 per minute",
        "LOGIN_LIMIT_PER_ADDRESS": "100000 per minute",
        **SHARED_LIMITS,
    }
    with LiveServer(env, workers=2) as server:
        server.auth, server.client = auth, client
        # The whole search on SQLite; on MariaDB, fewer examples of each
        # operation, for what only that database would answer differently
        # (its errors, its limits), in a suite that has to stay within CI's
        # time.
        server.max_examples = 25 if request.param == "sqlite" else 8
        yield server
    empty_tables(app)
    assert "Traceback" not in server.output, server.output[-5000:]
    assert '" 500 ' not in server.output


def schemathesis(server, name, include, headers=(), auth=None):
    """Run schemathesis on some operations; the JUnit report's test cases.
    One worker: two race in CPython 3.11's ast module, which hypothesis
    calls from each to describe a lambda (python/cpython#106905), and the
    run then fails with a "recursion depth mismatch" the app has nothing to
    do with (it did, once, on the main run's POST /account/email)."""
    report = ARTIFACTS / f"{name}.xml"
    report.parent.mkdir(parents=True, exist_ok=True)
    args = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{server.url}/openapi.json",
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--max-examples",
        str(server.max_examples),
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        *include,
    ]
    for header in headers:
        args += ["--header", header]
    if auth:
        args += ["--auth", auth]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": HOOKS.stem,
        "PYTHONPATH": str(HOOKS.parent),
    }
    run = subprocess.run(
        args,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        # About 20 s a run here alone; under coverage in a full suite on a busy
        # machine the largest run took over 120 s. The bound only stops a
        # fuzzer that hangs.
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20000:]
    return ET.parse(report).getroot().iter("testcase"), output


def test_fuzzing_finds_no_server_error_and_no_departure_from_the_spec(fuzz_site):
    auth = fuzz_site.auth
    alice = auth.login("alice").get_json()
    bob_logout = auth.login("bob").get_json()["token"]
    bob_refresh = auth.login("bob").get_json()["refresh_token"]
    runs = [
        (
            "api",
            ["--exclude-path-regex", "^/(login|logout|refresh)$|^/admin/"],
            [f"Authorization: Bearer {alice['token']}"],
            None,
        ),
        ("login", ["--include-path", "/login"], [], f"alice:{PASSWORD}"),
        (
            "logout",
            ["--include-path", "/logout"],
            [f"Authorization: Bearer {bob_logout}"],
            None,
        ),
        (
            "refresh",
            ["--include-path", "/refresh"],
            [f"Authorization: Bearer {bob_refresh}"],
            None,
        ),
    ]
    tested = set()
    client = fuzz_site.client

    def fuzz(name, include, headers, basic):
        cases, output = schemathesis(fuzz_site, name, include, headers, basic)
        names = {case.get("name") for case in cases}
        assert names, f"schemathesis ran nothing in {name!r}:\n{output}"
        tested.update(names)

    for run in runs:
        fuzz(*run)
    # alice's token survived: nothing above signed her out.
    assert client.get("/files", headers=bearer(alice["token"])).status_code == 200
    carol = auth.login("carol").get_json()["token"]
    fuzz(
        "admin",
        ["--include-path-regex", "^/admin/"],
        [f"Authorization: Bearer {carol}"],
        None,
    )
    # Every operation of the description was fuzzed, none left out by a filter;
    # schemathesis leaves out the description's own address (test_openapi.py
    # checks that one).
    spec = client.get("/openapi.json").get_json()
    operations = {
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters" and path != "/openapi.json"
    }
    assert operations <= tested, operations - tested
