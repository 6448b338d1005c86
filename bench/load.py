"""Requests a second on GET /files (signed in, JSON) against the bare GET /livez.

    .venv/bin/python bench/load.py                        # MariaDB, 3 rounds
    .venv/bin/python bench/load.py --database-url sqlite  # a temporary SQLite file
    .venv/bin/python bench/load.py --seconds 2 --rounds 1 # a quick check

It creates a database of its own on the MariaDB server (``--server-url``), brings
its schema up with the migrations, signs up a user with a full default page of
small files, and starts gunicorn with the committed ``gunicorn.conf.py`` on
127.0.0.1 (only the port is chosen here). Then wrk (Debian's ``wrk`` package)
loads ``/livez`` and ``/files`` in turns, with the same connections and
threads, for a few rounds; the medians, their ratio and the latencies are
printed as Markdown, ready to paste, and written to ``bench/results/load.json``.

Any error counts: a socket error or timeout, a response that is not 2xx (wrk
checks each one), a 5xx or a traceback in the server's log. The exit status is
1 when there was one, 2 when the run could not be set up or took longer than
``--timeout``. gunicorn is stopped and the database dropped on the way out,
whatever happened.
"""

import argparse
import contextlib
import json
import logging
import os
import re
import runpy
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.mariadb import DatabaseUnreachable, scratch_database  # noqa: E402
from harness.server import LiveServer  # noqa: E402

# The longest load the run may put on the machine, warm-up included.
LOAD_BUDGET_SECONDS = 60
TARGET_RATIO = 0.5
FILE_COUNT = 50  # GET /files shows 50 a page by default
RESULT_MARK = "LOCKBOX_WRK "
SHARED_LIMIT_STORAGE = {"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379"}
# Variables that would run gunicorn with other than the committed configuration.
CONFIG_OVERRIDES = (
    "GUNICORN_CMD_ARGS",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "LOCKBOX_BIND",
    "FLASK_DEBUG",
)

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


class SetupError(RuntimeError):
    """The run could not be prepared or did not finish (exit status 2)."""


def parse_args(argv=None):
    """Command-line options, with the load budget checked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        help="load this database instead of a new MariaDB one (its schema is "
        "brought up to date, and the load user removed at the end); "
        "'sqlite' for a temporary SQLite file",
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get("LOCKBOX_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306"),
        help="MariaDB server to make the database on (default: %(default)s)",
    )
    parser.add_argument(
        "--driver",
        choices=["mysqlclient", "mariadbconnector"],
        default="mysqlclient",
        help="driver for the database made on --server-url (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of both (default: %(default)s)"
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
        default=150,
        help="hard limit on the whole run in seconds, set-up included "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench" / "results" / "load.json",
        help="where the JSON results go (default: bench/results/load.json)",
    )
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
    return 2 * (args.warmup + args.rounds * args.seconds)


@contextlib.contextmanager
def hard_timeout(seconds: int):
    """Raise SetupError in the main thread once ``seconds`` have passed.

    Whatever is registered for clean-up outside this block still runs after it.
    """

    def expire(signum, frame):
        raise SetupError(f"the run took longer than {seconds} s (--timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def database(args, scratch: Path):
    """The URL of the database to load, and whether it was made for this run.

    A database made here (on MariaDB, or a SQLite file in ``scratch``) is
    dropped on the way out.
    """
    if args.database_url == "sqlite":
        yield f"sqlite:///{scratch / 'lockbox.db'}", True
        return
    if args.database_url:
        yield args.database_url, False
        return
    try:
        with scratch_database(args.server_url, "lockbox_load") as url:
            if args.driver == "mariadbconnector":
                url = "mariadb+mariadbconnector://" + url.split("://", 1)[1]
            yield url, True
    except DatabaseUnreachable as error:
        raise SetupError(
            f"{error}; --server-url for another server, or --database-url sqlite"
        ) from None


@contextlib.contextmanager
def load_user(url: str, secret_key: str, remove: bool):
    """The schema (by the migrations) and a new user; (app, username, password).

    With ``remove``, the user and its files are deleted on the way out.
    """
    from app import create_app
    from authentication import hash_password
    from models import User, db

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


def gunicorn_settings() -> dict:
    """The worker settings gunicorn.conf.py gives without overrides."""
    saved = {
        name: os.environ.pop(name) for name in CONFIG_OVERRIDES if name in os.environ
    }
    try:
        settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    finally:
        os.environ.update(saved)
    return {name: settings[name] for name in ("worker_class", "workers", "threads")}


def statements_per_request(app, path: str, token: str | None) -> int:
    """SQL statements one request to ``path`` sends, counted in-process."""
    from sqlalchemy import event

    from models import db

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
    """5xx answers in the access log, and tracebacks, in the server's output."""
    statuses = re.findall(r'" (\d{3}) (?:\d+|-) "', log)
    return {
        "access_log_lines": len(statuses),
        "server_5xx": sum(status.startswith("5") for status in statuses),
        "tracebacks": log.count("Traceback (most recent call last)"),
    }


def machine() -> dict:
    """What the numbers are measured on, and how busy it is at the start."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }


def summarize(runs: dict) -> dict:
    """Medians per endpoint over the rounds, totals, and the ratio of the medians."""
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "requests_per_s": statistics.median(r["requests_per_s"] for r in results),
            "p50_ms": statistics.median(r["latency_us"]["p50"] for r in results) / 1e3,
            "p99_ms": statistics.median(r["latency_us"]["p99"] for r in results) / 1e3,
            "server_cpu_ms": statistics.median(r["server_cpu_ms"] for r in results),
            "requests": sum(r["requests"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "non_2xx": sum(r["non_2xx"] for r in results),
        }
    summary["ratio"] = (
        summary["files"]["requests_per_s"] / summary["livez"]["requests_per_s"]
    )
    summary["round_ratios"] = [
        files["requests_per_s"] / livez["requests_per_s"]
        for livez, files in zip(runs["livez"], runs["files"], strict=True)
    ]
    return summary


def report(results: dict) -> str:
    """A ready-to-paste Markdown summary of the run."""
    summary, config, host = results["summary"], results["config"], results["machine"]
    gunicorn = config["gunicorn"]
    verdict = "met" if summary["ratio"] >= TARGET_RATIO else "missed"
    lines = [
        f"Measured {results['date']} on {host['cpus']} cores ({host['cpu_model']}; "
        f"load average {host['load_average_at_start']} at the start), with "
        f"{config['database']}. gunicorn.conf.py as committed: "
        f"{gunicorn['workers']} {gunicorn['worker_class']} workers × "
        f"{gunicorn['threads']} threads. wrk -t{config['threads']} "
        f"-c{config['connections']}: {config['rounds']} round(s) × 2 endpoints × "
        f"{config['seconds']} s, taking turns, after {config['warmup']} s of "
        f"warm-up each; medians over the rounds. {config['files']} files on the "
        "page.",
        "",
        "| endpoint | requests/s | p50 latency | p99 latency | gunicorn CPU a request "
        "| SQL statements a request | requests | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ("livez", "files"):
        row = summary[name]
        lines.append(
            f"| `GET /{name}` | {row['requests_per_s']:,.0f} | {row['p50_ms']:.1f} ms "
            f"| {row['p99_ms']:.1f} ms | {row['server_cpu_ms']:.2f} ms "
            f"| {results['statements'][name]} | {row['requests']:,} "
            f"| {row['errors']} |"
        )
    per_round = ", ".join(f"{ratio:.0%}" for ratio in summary["round_ratios"])
    server = results["server"]
    lines += [
        "",
        f"`GET /files` ÷ `GET /livez`: **{summary['ratio']:.0%}** (target ≥ "
        f"{TARGET_RATIO:.0%}: {verdict}; by round: {per_round}). Errors: "
        f"{results['errors']} (non-2xx, socket errors and timeouts seen by wrk; "
        f"{server['server_5xx']} 5xx and {server['tracebacks']} tracebacks in "
        "the server's log).",
    ]
    return "\n".join(lines)


def measure(args, scratch: Path) -> dict:
    """Set everything up, load both endpoints in turns, and gather the results."""
    import requests

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
        # The committed gunicorn.conf.py, its worker count included: with sign-in
        # limits shared through Redis, as several workers need.
        environment = {name: None for name in CONFIG_OVERRIDES}
        environment.update(
            SECRET_KEY=secret_key, DATABASE_URL=url, **SHARED_LIMIT_STORAGE
        )
        server = stack.enter_context(LiveServer(environment, shipped=True))
        signed_in = requests.get(
            server.url + "/login", auth=(username, password), timeout=30
        )
        token = signed_in.json()["token"]
        upload_files(server.url, token)
        bearer = {"Authorization": f"Bearer {token}"}
        page = requests.get(server.url + "/files", headers=bearer, timeout=30).json()
        if len(page["items"]) != page["per_page"] or page["total"] != FILE_COUNT:
            raise SetupError(f"GET /files is not a full page: {page}")
        statements = {
            "livez": statements_per_request(app, "/livez", None),
            "files": statements_per_request(app, "/files", token),
        }
        targets = {
            "livez": (server.url + "/livez", ()),
            "files": (server.url + "/files", (f"Authorization: Bearer {token}",)),
        }
        if args.warmup:
            for target, headers in targets.values():
                run_wrk(args, script, target, args.warmup, headers)
        runs: dict[str, list] = {"livez": [], "files": []}
        for round_number in range(args.rounds):
            # Each endpoint goes first every other round: neither always
            # follows the other.
            order = ["livez", "files"] if round_number % 2 == 0 else ["files", "livez"]
            for name in order:
                target, headers = targets[name]
                cpu_before = server.cpu_seconds()
                result = run_wrk(args, script, target, args.seconds, headers)
                cpu = server.cpu_seconds() - cpu_before
                result["server_cpu_ms"] = cpu * 1e3 / max(result["requests"], 1)
                runs[name].append(result)
                print(
                    f"  round {round_number + 1}, GET /{name}: "
                    f"{result['requests_per_s']:,.0f} requests/s, "
                    f"p99 {result['latency_us']['p99'] / 1e3:.1f} ms, "
                    f"{result['server_cpu_ms']:.2f} ms of server CPU each, "
                    f"{result['errors']} errors",
                    flush=True,
                )
    # gunicorn has stopped: its log is complete.
    server_problems = server_log_problems(server.output)
    summary = summarize(runs)
    from sqlalchemy.engine import make_url

    database_url = make_url(url)
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": host,
        "config": {
            "database": f"{database_url.get_backend_name()} "
            f"({database_url.get_driver_name()})",
            "gunicorn": gunicorn_settings(),
            "threads": args.threads,
            "connections": args.connections,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "files": FILE_COUNT,
        },
        "statements": statements,
        "runs": runs,
        "summary": summary,
        "server": server_problems,
        "errors": summary["livez"]["errors"]
        + summary["files"]["errors"]
        + server_problems["server_5xx"]
        + server_problems["tracebacks"],
    }


def stop_on_sigterm(signum, frame):
    """Leave through the clean-ups when asked to stop."""
    raise SystemExit(128 + signum)


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
