"""Lockbox under load, against baselines served the same way, as ratios.

    .venv/bin/python bench/load.py                        # MariaDB, 3 rounds
    .venv/bin/python bench/load.py --database-url sqlite  # a temporary SQLite file
    .venv/bin/python bench/load.py --seconds 2 --rounds 1 # a quick check

Two comparisons, each a ratio of requests a second measured in the same run:

- ``GET /livez``, no token, no database: Lockbox against a bare Flask app
  (bench/bare_app.py), which shows what Lockbox's own layers cost on every
  request. Target: Lockbox at 85 % of the bare app or more.
- ``GET /files?per_page=20``, signed in, a page of 20 files: Lockbox against
  the same listing written the usual way (bench/peer_app.py: Flask-SQLAlchemy's
  ``db.paginate``, a flask-marshmallow schema, Flask-JWT-Extended's
  ``@jwt_required()``), reading the same database. Target: Lockbox 1.5 times
  the peer or more.

It creates a database of its own on the MariaDB server (``--server-url``), brings
its schema up with the migrations, signs up a user with 20 small files, and
starts the three apps with the same gunicorn command line, the committed
``gunicorn.conf.py`` and the same environment (only the port differs). The
peer signs the same user in with its own ``GET /login``. Then wrk (Debian's
``wrk`` package) loads the four endpoints in turns, with the same connections
and threads, for a few rounds, the order reversed every other round; the
medians, the ratios, the latencies, the servers' CPU a request and the SQL
statements a request (counted in-process with each app) are printed as
Markdown, ready to paste, and written to ``bench/results/load.json``.

Any error counts: a socket error or timeout, a response that is not 2xx (wrk
checks each one), a 5xx or a traceback in a server's log (Lockbox logs every
request; the bare and peer apps log only their tracebacks). The exit status is
1 when there was one, 2 when the run could not be set up or took longer than
``--timeout``. The servers are stopped and the database dropped on the way
out, whatever happened.
"""

import argparse
import contextlib
import json
import logging
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CONFIG_OVERRIDES,
    SetupError,
    add_server_options,
    gunicorn_settings,
    hard_timeout,
    machine,
    new_database,
    stop_on_sigterm,
)
from harness.server import LiveServer  # noqa: E402

# The longest load the run may put on the machine, warm-up included (the
# defaults: 4 endpoints × (2 s + 3 rounds × 8 s) = 104 s).
LOAD_BUDGET_SECONDS = 120
FILE_COUNT = 20
# Lockbox shows 50 a page by default and the peer (db.paginate) 20: both are
# asked for one page of all the files.
LISTING = f"/files?per_page={FILE_COUNT}"
RESULT_MARK = "LOCKBOX_WRK "
SHARED_LIMIT_STORAGE = {"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379"}

# Runs inside wrk: counts every response that is not 2xx, per thread, and prints
# the totals and latency percentiles (microseconds) as one JSON line at the end.
WRK_SCRIPT = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non_2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local non_2xx = 0
  for _, thread in ipairs(threads) do
    non_2xx = non_2xx + thread:get("non_2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT_MARK{"requests": %d, "duration_us": %d, "bytes": %d, "non_2xx": %d, '
    .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, '
    .. '"timeouts": %d, "latency_us": {"mean": %.1f, '
    .. '"p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes, non_2xx,
    e.connect, e.read, e.write, e.timeout, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
""".replace("RESULT_MARK", RESULT_MARK)


# The gunicorn app targets, all run with the same command line and environment.
APPS = {
    "lockbox": "app:create_app()",
    "bare": "bench.bare_app:app",
    "peer": "bench.peer_app:create_app()",
}
# What wrk loads: the app, the path, whether it is signed in.
ENDPOINTS = {
    "lockbox_livez": ("lockbox", "/livez", False),
    "bare_livez": ("bare", "/livez", False),
    "lockbox_files": ("lockbox", LISTING, True),
    "peer_files": ("peer", LISTING, True),
}


class Comparison(NamedTuple):
    """Lockbox's endpoint against a baseline's: requests a second, as a ratio."""

    name: str
    title: str
    lockbox: str
    baseline: str
    target: float
    as_percent: bool  # 85 % reads better than 0.85×; 1.5× better than 150 %


COMPARISONS = (
    Comparison(
        "livez",
        "`GET /livez`, vs a bare Flask app",
        "lockbox_livez",
        "bare_livez",
        0.85,
        True,
    ),
    Comparison(
        "files",
        f"signed-in `GET /files`, {FILE_COUNT} files, vs the usual Flask stack",
        "lockbox_files",
        "peer_files",
        1.5,
        False,
    ),
)


def option_parser() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        help="load this database instead of a new MariaDB one (its schema is "
        "brought up to date, and the load user removed at the end); "
        "'sqlite' for a temporary SQLite file",
    )
    add_server_options(parser)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of all four endpoints (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=int,
        default=8,
        help="seconds per endpoint and round (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="seconds per endpoint before the rounds (default: %(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=16,
        help="wrk's -c (default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="wrk's -t (default: %(default)s)"
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=170,
        help="hard limit on the whole run in seconds, set-up included "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench" / "results" / "load.json",
        help="where the JSON results go (default: bench/results/load.json)",
    )
    return parser


def parse_args(argv=None):
    """Command-line options, with the load budget checked."""
    parser = option_parser()
    args = parser.parse_args(argv)
    if min(args.rounds, args.seconds, args.connections, args.threads) < 1:
        parser.error("--rounds, --seconds, --connections and --threads must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if load_seconds(args) > LOAD_BUDGET_SECONDS:
        parser.error(
            f"{load_seconds(args)} s of load (warm-up included) is over the "
            f"{LOAD_BUDGET_SECONDS} s budget: fewer --rounds or --seconds"
        )
    if args.timeout <= load_seconds(args):
        parser.error("--timeout must leave time for setting up, beyond the load")
    return args


def load_seconds(args) -> int:
    """Seconds of load the run puts on the server, warm-up included."""
    return len(ENDPOINTS) * (args.warmup + args.rounds * args.seconds)


@contextlib.contextmanager
def database(args, scratch: Path):
    """The URL of the database to load, and whether it was made for this run
    (then it is dropped on the way out)."""
    if args.database_url and args.database_url != "sqlite":
        yield args.database_url, False
        return
    with new_database(args, scratch, "lockbox_load") as url:
        yield url, True


@contextlib.contextmanager
def load_user(url: str, secret_key: str, remove: bool):
    """The schema (by the migrations) and a new user; (app, username, password).

    With ``remove``, the user and its files are deleted on the way out.
    """
    from app import create_app
    from models import User, db
    from passwords import hash_password

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": secret_key})
    app.logger.setLevel(logging.WARNING)
    runner = app.test_cli_runner()
    try:
        result = runner.invoke(args=["init-db"])
        if result.exit_code != 0:
            raise SetupError(f"init-db failed: {result.output}{result.exception}")
        username = f"load-{uuid.uuid4().hex[:8]}"
        password = secrets.token_urlsafe(16)
        with app.app_context():
            db.session.add(
                User(username=username, password_hash=hash_password(password))
            )
            db.session.commit()
        try:
            yield app, username, password
        finally:
            if remove:
                runner.invoke(args=["users", "delete", username, "--yes"])
    finally:
        with app.app_context():
            db.engine.dispose()


def upload_files(base_url: str, token: str) -> None:
    """A full default page of small text files, uploaded as API clients do."""
    import requests

    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        for number in range(FILE_COUNT):
            body = f"line {number}\n".encode() * (20 + 37 * number)
            response = session.post(
                f"{base_url}/upload",
                files={"inputFile": (f"report-{number:03d}.txt", body, "text/plain")},
                data={"description": f"Quarterly figures, part {number}"},
                timeout=30,
            )
            if response.status_code != 201:
                raise SetupError(f"upload failed: {response.status_code}")


def statements_per_request(app, db, path: str, token: str | None) -> int:
    """SQL statements one request to ``path`` sends, counted in-process with
    ``app`` and its Flask-SQLAlchemy ``db``."""
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine
    count = 0

    def counted(*args):
        nonlocal count
        count += 1

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = app.test_client()
    client.get(path, headers=headers)  # the first opens a connection
    event.listen(engine, "before_cursor_execute", counted)
    try:
        response = client.get(path, headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", counted)
    if response.status_code != 200:
        raise SetupError(f"{path} answered {response.status_code} in-process")
    return count


@contextlib.contextmanager
def peer_app(url: str, secret_key: str):
    """The peer app in this process, on the same database, and its ``db``: to
    count its SQL the way Lockbox's is counted."""
    from bench.peer_app import create_app, db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "JWT_SECRET_KEY": secret_key})
    try:
        yield app, db
    finally:
        with app.app_context():
            db.engine.dispose()


def sign_in(base_url: str, username: str, password: str) -> str:
    """A token from an app's ``GET /login`` with HTTP Basic credentials."""
    import requests

    signed_in = requests.get(base_url + "/login", auth=(username, password), timeout=30)
    if signed_in.status_code != 200:
        raise SetupError(f"{base_url}/login answered {signed_in.status_code}")
    return signed_in.json()["token"]


def check_same_listing(lockbox: dict, peer: dict) -> None:
    """Both apps answer one full page of the same files, with the same fields."""
    if len(lockbox["items"]) != FILE_COUNT or lockbox["total"] != FILE_COUNT:
        raise SetupError(f"Lockbox's GET {LISTING} is not one full page: {lockbox}")
    shape = {key: value for key, value in lockbox.items() if key != "items"}
    if {key: value for key, value in peer.items() if key != "items"} != shape:
        raise SetupError(f"the peer's page is not Lockbox's: {peer}")
    for mine, theirs in zip(lockbox["items"], peer["items"], strict=True):
        if mine.keys() != theirs.keys() or mine["id"] != theirs["id"]:
            raise SetupError(f"the peer lists {theirs}, Lockbox {mine}")


def run_wrk(args, script: Path, url: str, seconds: int, headers=()) -> dict:
    """One wrk run: its totals, latencies, requests a second and error count."""
    command = [
        "wrk",
        f"--threads={args.threads}",
        f"--connections={args.connections}",
        f"--duration={seconds}s",
        "--timeout=5s",
        f"--script={script}",
    ]
    for header in headers:
        command += ["--header", header]
    command.append(url)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        raise SetupError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    result = json.loads(lines[-1].removeprefix(RESULT_MARK))
    result["requests_per_s"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(
        result[kind]
        for kind in (
            "non_2xx",
            "connect_errors",
            "read_errors",
            "write_errors",
            "timeouts",
        )
    )
    return result


def server_log_problems(log: str) -> dict:
    """5xx answers in the request lines, and tracebacks, in a server's output.

    Lockbox's own line for each request (logs.py, text format: ``app: GET
    /files 200 3.1ms 5186B 127.0.0.1``), or gunicorn's access log should it be
    turned on; the bare and peer apps write neither.
    """
    statuses = re.findall(r" [A-Z]+ \S+ (\d{3}) \d+(?:\.\d+)?ms ", log)
    statuses += re.findall(r'" (\d{3}) (?:\d+|-) "', log)
    return {
        "access_log_lines": len(statuses),
        "server_5xx": sum(status.startswith("5") for status in statuses),
        "tracebacks": log.count("Traceback (most recent call last)"),
    }


def summarize(runs: dict) -> dict:
    """Medians per endpoint over the rounds, and totals."""
    return {
        name: {
            "requests_per_s": statistics.median(r["requests_per_s"] for r in results),
            "p50_ms": statistics.median(r["latency_us"]["p50"] for r in results) / 1e3,
            "p99_ms": statistics.median(r["latency_us"]["p99"] for r in results) / 1e3,
            "server_cpu_ms": statistics.median(r["server_cpu_ms"] for r in results),
            "requests": sum(r["requests"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "non_2xx": sum(r["non_2xx"] for r in results),
        }
        for name, results in runs.items()
    }


def compare(runs: dict, summary: dict) -> dict:
    """Each comparison's ratio of the medians, its target, and the round ratios."""
    comparisons = {}
    for comparison in COMPARISONS:
        ratio = (
            summary[comparison.lockbox]["requests_per_s"]
            / summary[comparison.baseline]["requests_per_s"]
        )
        comparisons[comparison.name] = {
            "lockbox": comparison.lockbox,
            "baseline": comparison.baseline,
            "ratio": ratio,
            "target": comparison.target,
            "met": ratio >= comparison.target,
            "round_ratios": [
                mine["requests_per_s"] / theirs["requests_per_s"]
                for mine, theirs in zip(
                    runs[comparison.lockbox], runs[comparison.baseline], strict=True
                )
            ],
        }
    return comparisons


def ratio_text(comparison: Comparison, ratio: float, digits: int = 2) -> str:
    """A ratio as the comparison's target is written: 85 %, or 1.5×."""
    if comparison.as_percent:
        return f"{ratio * 100:.0f} %"
    return f"{ratio:.{digits}f}×"


def running_note(config: dict) -> str:
    """The worker counts seen running, when they are not what the file says."""
    running = config["workers_running"]
    if set(running.values()) == {config["gunicorn"]["workers"]}:
        return ""
    counts = ", ".join(f"{name} {count}" for name, count in running.items())
    return f" (workers seen running: {counts})"


def report_intro(results: dict) -> str:
    """The paragraph that says how, where and against what the run measured."""
    config, host = results["config"], results["machine"]
    gunicorn = config["gunicorn"]
    return (
        f"Measured {results['date']} on {host['cpus']} cores ({host['cpu_model']}; "
        f"load average {host['load_average_at_start']} at the start), with "
        f"{config['database']}. Each app served by the same command line, "
        "`gunicorn -c gunicorn.conf.py <app>`, gunicorn.conf.py as committed: "
        f"{gunicorn['workers']} {gunicorn['worker_class']} workers × "
        f"{gunicorn['threads']} threads{running_note(config)}. "
        f"wrk -t{config['threads']} "
        f"-c{config['connections']}: {config['rounds']} round(s) × "
        f"{len(ENDPOINTS)} endpoints × {config['seconds']} s, taking turns, after "
        f"{config['warmup']} s of warm-up each; medians over the rounds. The "
        f"listing: `GET {LISTING}`, {config['files']} files, one page, with a "
        "Bearer token. Baselines: bench/bare_app.py (Flask alone) for `/livez`; "
        "bench/peer_app.py for `/files` (Flask-SQLAlchemy `db.paginate`, a "
        "flask-marshmallow schema, Flask-JWT-Extended `@jwt_required()`, on the "
        "same database)."
    )


def comparison_table(results: dict) -> list[str]:
    """The table of the comparisons: Lockbox's figures beside its baseline's."""
    summary, statements = results["summary"], results["statements"]
    lines = [
        "| Lockbox vs baseline | Lockbox requests/s | baseline requests/s "
        "| Lockbox ÷ baseline | target | p50 latency (Lockbox / baseline) "
        "| p99 latency | gunicorn CPU a request | SQL statements a request "
        "| requests | errors |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for comparison in COMPARISONS:
        outcome = results["comparisons"][comparison.name]
        mine, theirs = summary[comparison.lockbox], summary[comparison.baseline]
        verdict = "met" if outcome["met"] else "missed"
        target = ratio_text(comparison, comparison.target, digits=1)
        lines.append(
            f"| {comparison.title} | {mine['requests_per_s']:,.0f} "
            f"| {theirs['requests_per_s']:,.0f} "
            f"| **{ratio_text(comparison, outcome['ratio'])}** "
            f"| ≥ {target}: {verdict} "
            f"| {mine['p50_ms']:.1f} / {theirs['p50_ms']:.1f} ms "
            f"| {mine['p99_ms']:.1f} / {theirs['p99_ms']:.1f} ms "
            f"| {mine['server_cpu_ms']:.2f} / {theirs['server_cpu_ms']:.2f} ms "
            f"| {statements[comparison.lockbox]} / {statements[comparison.baseline]} "
            f"| {mine['requests']:,} / {theirs['requests']:,} "
            f"| {mine['errors'] + theirs['errors']} |"
        )
    return lines


def rounds_and_errors(results: dict) -> str:
    """The ratios of each round, and the errors seen by wrk and in the logs."""
    by_round = "; ".join(
        f"`{comparison.name}` "
        + ", ".join(
            ratio_text(comparison, ratio)
            for ratio in results["comparisons"][comparison.name]["round_ratios"]
        )
        for comparison in COMPARISONS
    )
    servers = results["servers"]
    in_logs = ", ".join(
        f"{name} {problems['server_5xx']} / {problems['tracebacks']}"
        for name, problems in servers.items()
    )
    return (
        f"Ratios by round: {by_round}. Errors: {results['errors']} (non-2xx, "
        "socket errors and timeouts seen by wrk; 5xx answers / tracebacks in "
        f"the servers' logs: {in_logs}, from "
        f"{servers['lockbox']['access_log_lines']:,} request lines of Lockbox's "
        "and the tracebacks alone of the others, which log no requests)."
    )


def report(results: dict) -> str:
    """A ready-to-paste Markdown summary of the run."""
    lines = [
        report_intro(results),
        "",
        *comparison_table(results),
        "",
        rounds_and_errors(results),
    ]
    return "\n".join(lines)


def shipped_environment(secret_key: str, url: str) -> dict:
    """The committed gunicorn.conf.py, its worker count included: with sign-in
    limits shared through Redis, as several workers need. The same for every
    app, which reads what it needs of it."""
    environment = {name: None for name in CONFIG_OVERRIDES}
    environment.update(SECRET_KEY=secret_key, DATABASE_URL=url, **SHARED_LIMIT_STORAGE)
    return environment


def start_servers(stack: contextlib.ExitStack, environment: dict) -> dict:
    """Every app under gunicorn, the same way, stopped when ``stack`` closes."""
    return {
        name: stack.enter_context(LiveServer(environment, shipped=True, target=target))
        for name, target in APPS.items()
    }


def sign_in_and_fill(servers: dict, username: str, password: str) -> dict:
    """Tokens from Lockbox and the peer, the user's files uploaded through
    Lockbox, and both listings checked to be the same page."""
    import requests

    lockbox_url = servers["lockbox"].url
    lockbox_token = sign_in(lockbox_url, username, password)
    upload_files(lockbox_url, lockbox_token)
    tokens = {
        "lockbox": lockbox_token,
        "peer": sign_in(servers["peer"].url, username, password),
    }
    pages = {}
    for name, token in tokens.items():
        listed = requests.get(
            servers[name].url + LISTING,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        if listed.status_code != 200:
            raise SetupError(f"{name}'s GET {LISTING}: {listed.status_code}")
        pages[name] = listed.json()
    check_same_listing(pages["lockbox"], pages["peer"])
    return tokens


def count_statements(app, peer, peer_db, tokens: dict) -> dict:
    """SQL statements a request of each endpoint sends, counted in-process."""
    from models import db

    return {
        "lockbox_livez": statements_per_request(app, db, "/livez", None),
        # No database at all.
        "bare_livez": 0,
        "lockbox_files": statements_per_request(app, db, LISTING, tokens["lockbox"]),
        "peer_files": statements_per_request(peer, peer_db, LISTING, tokens["peer"]),
    }


def wrk_targets(servers: dict, tokens: dict) -> dict:
    """Per endpoint: its server, its URL, and wrk's headers (a token if signed in)."""
    targets = {}
    for name, (server_name, path, signed_in) in ENDPOINTS.items():
        headers = (f"Authorization: Bearer {tokens[server_name]}",) if signed_in else ()
        targets[name] = (
            servers[server_name],
            servers[server_name].url + path,
            headers,
        )
    return targets


def load_in_turns(args, script: Path, targets: dict) -> dict:
    """The warm-up, then the rounds of every endpoint in turns, each run printed;
    per endpoint, each round's wrk result with the server's CPU a request."""
    if args.warmup:
        for _, target, headers in targets.values():
            run_wrk(args, script, target, args.warmup, headers)
    runs: dict[str, list] = {name: [] for name in ENDPOINTS}
    for round_number in range(args.rounds):
        # The order is reversed every other round: no endpoint always
        # follows the same one.
        order = list(ENDPOINTS)
        if round_number % 2:
            order.reverse()
        for name in order:
            server, target, headers = targets[name]
            cpu_before = server.cpu_seconds()
            result = run_wrk(args, script, target, args.seconds, headers)
            cpu = server.cpu_seconds() - cpu_before
            result["server_cpu_ms"] = cpu * 1e3 / max(result["requests"], 1)
            runs[name].append(result)
            print(
                f"  round {round_number + 1}, {name}: "
                f"{result['requests_per_s']:,.0f} requests/s, "
                f"p99 {result['latency_us']['p99'] / 1e3:.1f} ms, "
                f"{result['server_cpu_ms']:.2f} ms of server CPU each, "
                f"{result['errors']} errors",
                flush=True,
            )
    return runs


def run_config(args, url: str, environment: dict, workers: dict) -> dict:
    """How the run was made: the database, gunicorn's settings and the workers
    seen running, the apps, and wrk's options."""
    from sqlalchemy.engine import make_url

    database_url = make_url(url)
    return {
        "database": f"{database_url.get_backend_name()} "
        f"({database_url.get_driver_name()})",
        "gunicorn": gunicorn_settings(environment),
        "workers_running": workers,
        "apps": APPS,
        "threads": args.threads,
        "connections": args.connections,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "files": FILE_COUNT,
        "listing": LISTING,
    }


def error_count(summary: dict, server_problems: dict) -> int:
    """Every error: wrk's, and the 5xx answers and tracebacks in the logs."""
    return sum(row["errors"] for row in summary.values()) + sum(
        problems["server_5xx"] + problems["tracebacks"]
        for problems in server_problems.values()
    )


def measure(args, scratch: Path) -> dict:
    """Set everything up, load the four endpoints in turns, gather the results."""
    host = machine()
    secret_key = secrets.token_urlsafe(48)
    script = scratch / "count.lua"
    script.write_text(WRK_SCRIPT)
    with contextlib.ExitStack() as stack, hard_timeout(args.timeout):
        # The timeout ends before the clean-ups run: they always get their turn.
        url, made_here = stack.enter_context(database(args, scratch))
        app, username, password = stack.enter_context(
            load_user(url, secret_key, remove=not made_here)
        )
        environment = shipped_environment(secret_key, url)
        servers = start_servers(stack, environment)
        tokens = sign_in_and_fill(servers, username, password)
        # What each server really runs, beside what gunicorn.conf.py says.
        workers = {name: len(server.worker_pids()) for name, server in servers.items()}
        peer, peer_db = stack.enter_context(peer_app(url, secret_key))
        statements = count_statements(app, peer, peer_db, tokens)
        runs = load_in_turns(args, script, wrk_targets(servers, tokens))
    # gunicorn has stopped: the logs are complete.
    server_problems = {
        name: server_log_problems(server.output) for name, server in servers.items()
    }
    summary = summarize(runs)
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": host,
        "config": run_config(args, url, environment, workers),
        "statements": statements,
        "runs": runs,
        "summary": summary,
        "comparisons": compare(runs, summary),
        "servers": server_problems,
        "errors": error_count(summary, server_problems),
    }


def main(argv=None) -> int:
    """Run the load test; 0 with no errors, 1 with some, 2 when it could not run."""
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "wrk is missing: install Debian's wrk package "
            "(sudo apt-get install wrk, or scripts/system-deps --test)",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="lockbox-load-") as scratch:
            results = measure(args, Path(scratch))
    except SetupError as error:
        print(f"The load test did not run through: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(report(results))
    print(f"\nJSON: {args.output}")
    if results["errors"]:
        print(f"{results['errors']} errors under load", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
