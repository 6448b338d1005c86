"""How the time of GET /files grows with the number of files a user owns.

    .venv/bin/python bench/listing.py                        # MariaDB (mysqlclient)
    .venv/bin/python bench/listing.py --database-url sqlite  # a temporary SQLite file
    .venv/bin/python bench/listing.py --counts 10,1000 --requests 20  # quicker

It creates a database of its own on the MariaDB server (``--server-url``; or a
SQLite file with ``--database-url sqlite``), brings its schema up with the
migrations (``init-db``), and makes one user whose files are counted, plus
``--others`` files (a few thousand by default) of ten other users, some of
them unfinished, their creation times interleaved with the user's, so that
the listing's filter on owner and ``complete`` has rows to skip. The user's
files are added in bulk (SQLAlchemy Core, multi-row INSERTs in batches) until
they number each of ``--counts`` (10, 1,000 and 100,000 by default): each a
finished file of a few bytes with its one chunk row, as a real upload of that
file leaves it, plus five unfinished (hidden) ones. On MariaDB the table's
statistics are refreshed (``ANALYZE TABLE``) after each fill, as InnoDB's
automatic recalculation would do a little later; SQLite, which the app never
analyzes, is left as the app leaves it.

At each count, in-process (``app.test_client()``, no HTTP server), signed in
with a Bearer token from ``GET /login``: ``--requests`` authenticated
``GET /files`` of the first page and of the last page (default ``per_page``),
taking turns, after a few untimed ones; the median and p90 of each. Every SQL
statement a request sends is timed with SQLAlchemy's ``before_cursor_execute``
and ``after_cursor_execute`` events (the time of the driver's
``cursor.execute``, which with mysqlclient's buffered cursor includes fetching
the rows, and with sqlite3 covers the work up to the first row: the count
subquery and the rows skipped for an offset), and sorted into the token
check, the page statement and any other. The total comes from the account's
kept count of finished files (``user.file_count``); for comparison, the count
the listing used to run with every page (``count(*)`` over the user's finished
files) and the page's rows are also timed apart, the same way and as many
times, outside a request. On
MariaDB, at the largest count, ``EXPLAIN`` and ``ANALYZE`` (rows actually
read) of the statements as the app sent them are kept; on SQLite ``EXPLAIN
QUERY PLAN``.

Results go to ``bench/results/listing.json`` (``--output``) and are printed
as Markdown. Target: the first page at 100,000 files within 1.5 times its
time at 10 files. The exit status is 0 when it is met, 1 when missed, 2 when
the run could not be set up or took longer than ``--timeout``. The database
is dropped (or the SQLite file deleted) on the way out, whatever happened.
"""

import argparse
import base64
import contextlib
import hashlib
import json
import logging
import math
import secrets
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    SetupError,
    add_server_options,
    hard_timeout,
    machine,
    new_database,
    stop_on_sigterm,
)

TARGET_RATIO = 1.5
BATCH = 5000
OTHER_USERS = 10
HIDDEN_OWN_FILES = 5
WARMUP_REQUESTS = 5
CONTENT = b"lockbox listing bench\n"
CONTENT_SHA256 = hashlib.sha256(CONTENT).hexdigest()
# The files' creation times: one a second from here, the user's and the
# others' interleaved.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        choices=["sqlite"],
        help="'sqlite' for a temporary SQLite file instead of a new MariaDB "
        "database (no other database is filled with the bench's rows)",
    )
    add_server_options(parser)
    parser.add_argument(
        "--counts",
        default="10,1000,100000",
        help="the user's finished files, comma-separated, increasing "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--others",
        type=int,
        default=5000,
        help=f"files of {OTHER_USERS} other users (default: %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=50,
        help="timed requests per page and count (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=300,
        help="hard limit on the whole run in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench" / "results" / "listing.json",
        help="where the JSON results go (default: bench/results/listing.json)",
    )
    args = parser.parse_args(argv)
    try:
        args.counts = [int(count) for count in args.counts.split(",")]
    except ValueError:
        parser.error("--counts must be whole numbers, comma-separated")
    if min(args.counts) < 1 or args.counts != sorted(set(args.counts)):
        parser.error("--counts must be increasing and at least 1")
    if args.others < 0 or args.requests < 1:
        parser.error("--others must be >= 0 and --requests >= 1")
    return args


@contextlib.contextmanager
def lockbox(url: str):
    """The app on ``url`` with its schema made by the migrations."""
    from app import create_app
    from models import db

    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": secrets.token_urlsafe(48)}
    )
    app.logger.setLevel(logging.WARNING)
    try:
        result = app.test_cli_runner().invoke(args=["init-db"])
        if result.exit_code != 0:
            raise SetupError(f"init-db failed: {result.output}{result.exception}")
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


class Filler:
    """Adds files in bulk: explicit ids, so that each file's chunk row can be
    inserted with it, in multi-row INSERTs of BATCH rows."""

    def __init__(self, app):
        from models import db

        self.app = app
        self.db = db
        self.next_id = 1
        self.inserted_rows = 0

    def users(self, names_and_hashes) -> list[int]:
        """Make users; their ids."""
        from models import User

        with self.app.app_context():
            users = [
                User(username=name, password_hash=password_hash)
                for name, password_hash in names_and_hashes
            ]
            self.db.session.add_all(users)
            self.db.session.commit()
            return [user.id for user in users]

    def files(self, owners_and_times, complete=True) -> None:
        """One file per (owner id, created_at); finished ones get their chunk."""
        from models import FileChunk, StoredFile

        files, chunks = [], []
        for owner_id, created_at in owners_and_times:
            file_id = self.next_id
            self.next_id += 1
            files.append(
                {
                    "id": file_id,
                    "owner_id": owner_id,
                    "filename": f"report-{file_id:07d}.txt",
                    "description": f"Quarterly figures, part {file_id}",
                    "content_type": "text/plain",
                    "size": len(CONTENT) if complete else 0,
                    "sha256": CONTENT_SHA256 if complete else None,
                    "chunk_size": 1024 * 1024,
                    "complete": complete,
                    "created_at": created_at,
                    "updated_at": created_at,
                    "hash_state": None,
                    "reserved": 0,
                }
            )
            if complete:
                chunks.append({"file_id": file_id, "seq": 0, "data": CONTENT})
        with self.app.app_context():
            with self.db.engine.begin() as connection:
                for start in range(0, len(files), BATCH):
                    connection.execute(
                        StoredFile.__table__.insert(), files[start : start + BATCH]
                    )
                for start in range(0, len(chunks), BATCH):
                    connection.execute(
                        FileChunk.__table__.insert(), chunks[start : start + BATCH]
                    )
            # What the app does whenever files become visible or go.
            import storage

            owners = {row["owner_id"] for row in files}
            storage.recount_files(*owners)
            self.db.session.commit()
        self.inserted_rows += len(files) + len(chunks)

    def analyze(self) -> None:
        """Refresh MariaDB's statistics of the tables just filled."""
        from sqlalchemy import text

        with self.app.app_context():
            if self.db.engine.dialect.name in ("mysql", "mariadb"):
                with self.db.engine.connect() as connection:
                    connection.execute(text("ANALYZE TABLE stored_file, file_chunk"))


def per_page() -> int:
    """GET /files's default page size (schemas.py FileListQuerySchema)."""
    from schemas import file_list_query_schema

    return file_list_query_schema.fields["per_page"].load_default


def second(n: int) -> datetime:
    """The ``n``-th second after EPOCH."""
    return EPOCH + timedelta(seconds=n)


class StatementClock:
    """Times every statement the engine sends while it is on, with the
    cursor-execute events: (kind, statement, parameters, seconds)."""

    def __init__(self, engine):
        self.engine = engine
        self.records = []

    def __enter__(self):
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc):
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)

    def take(self) -> list:
        """The records since the last take."""
        records, self.records = self.records, []
        return records

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        seconds = time.perf_counter() - conn.info["bench_started"].pop()
        self.records.append((kind_of(statement), statement, parameters, seconds))


def kind_of(statement: str) -> str:
    """Which part of a listing a statement is."""
    flat = " ".join(statement.split()).lower()
    if "from stored_file" in flat and "limit" in flat:
        return "page"
    if "count(*)" in flat and "from stored_file" in flat:
        return "count"
    if "from user" in flat or "from `user`" in flat or 'from "user"' in flat:
        return "auth"
    return "other"


def quantiles(values: list[float]) -> dict:
    """Median and 90th percentile, in milliseconds."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median_ms": statistics.median(ordered) * 1e3, "p90_ms": p90 * 1e3}


def time_requests(app, clock, token: str, paths: dict, count: int) -> tuple:
    """``count`` requests of each path, taking turns: their request and
    statement times, each kind of statement as sent, and the last answer."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    times = {name: [] for name in paths}
    cpu = {name: [] for name in paths}
    items = {}
    parts = {name: {} for name in paths}
    statements = {}
    for number in range(WARMUP_REQUESTS + count):
        order = list(paths) if number % 2 == 0 else list(reversed(paths))
        for name in order:
            clock.take()
            started, cpu_started = time.perf_counter(), time.thread_time()
            response = client.get(paths[name], headers=headers)
            seconds = time.perf_counter() - started
            cpu_seconds = time.thread_time() - cpu_started
            records = clock.take()
            if response.status_code != 200:
                raise SetupError(f"{paths[name]} answered {response.status_code}")
            items[name] = len(response.get_json()["items"])
            if number < WARMUP_REQUESTS:
                continue
            times[name].append(seconds)
            cpu[name].append(cpu_seconds)
            per_kind = {}
            for kind, statement, parameters, took in records:
                per_kind[kind] = per_kind.get(kind, 0) + took
                statements.setdefault((name, kind), (statement, parameters))
            for kind, took in per_kind.items():
                parts[name].setdefault(kind, []).append(took)
            parts[name].setdefault("statements", []).append(len(records))
    body = response.get_json()
    result = {}
    for name in paths:
        result[name] = {
            "items": items[name],
            "request": quantiles(times[name]),
            # This thread's CPU: all of a request's work with SQLite, none of
            # the server's with MariaDB; less swayed by other load than the
            # wall time.
            "request_cpu": quantiles(cpu[name]),
            "statements_per_request": statistics.median(parts[name].pop("statements")),
            "statement_ms": {
                kind: quantiles(values) for kind, values in parts[name].items()
            },
        }
    return result, statements, body


def time_parts(app, clock, owner_id: int, offsets: dict, count: int) -> tuple:
    """Two statements on their own, as many times: the count of the user's
    finished files, which the listing no longer runs (it reads the account's
    kept count, storage.recount_files), to show what it would cost; and the
    page's rows, as the listing sends them."""
    from sqlalchemy import bindparam, func

    from models import StoredFile, db
    from schemas import LISTED_COLUMNS

    OWNED = {"owner_id": bindparam("owner_id"), "complete": True}
    OWNED_COUNT = db.select(func.count()).select_from(StoredFile).filter_by(**OWNED)

    rows_only = (
        db.select(*LISTED_COLUMNS)
        .filter_by(**OWNED)
        .order_by(StoredFile.created_at.desc(), StoredFile.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    runs = {"count_alone": (OWNED_COUNT, {"owner_id": owner_id})}
    for name, offset in offsets.items():
        runs[f"rows_only_{name}"] = (
            rows_only,
            {"owner_id": owner_id, "limit": per_page(), "offset": offset},
        )
    times = {name: [] for name in runs}
    statements = {}
    for number in range(WARMUP_REQUESTS + count):
        for name, (statement, parameters) in runs.items():
            with app.app_context():
                clock.take()
                db.session.execute(statement, parameters).all()
                [(_, sql, sent, took)] = clock.take()
            statements[name] = (sql, sent)
            if number >= WARMUP_REQUESTS:
                times[name].append(took)
    return {name: quantiles(values) for name, values in times.items()}, statements


def explain(app, statements: dict) -> dict:
    """The database's plan of each statement, as sent: MariaDB's EXPLAIN and
    ANALYZE (which runs it and counts the rows read), SQLite's EXPLAIN QUERY
    PLAN."""
    from models import db

    plans = {}
    with app.app_context():
        engine = db.engine
        mysql = engine.dialect.name in ("mysql", "mariadb")
        prefixes = ["EXPLAIN", "ANALYZE"] if mysql else ["EXPLAIN QUERY PLAN"]
        with engine.connect() as connection:
            for name, (sql, parameters) in statements.items():
                plans[name] = {"sql": " ".join(sql.split()), "parameters": parameters}
                for prefix in prefixes:
                    result = connection.exec_driver_sql(f"{prefix} {sql}", parameters)
                    plans[name][prefix] = {
                        "columns": list(result.keys()),
                        "rows": [
                            ["NULL" if v is None else str(v) for v in row]
                            for row in result.all()
                        ],
                    }
    return plans


def initial_results(args) -> dict:
    """The results before any count: the date, the machine, the run's options."""
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine(),
        "config": {
            "counts": args.counts,
            "others": args.others,
            "other_users": OTHER_USERS,
            "requests": args.requests,
            "warmup_requests": WARMUP_REQUESTS,
        },
        "steps": [],
    }


def database_name(url: str) -> str:
    """The database's backend and driver, as the report names them."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return f"{parsed.get_backend_name()} ({parsed.get_driver_name()})"


def make_users(filler: Filler) -> tuple:
    """The user whose files are counted, and the others: (username, password,
    the user's id, the others' ids)."""
    from passwords import hash_password

    password = secrets.token_urlsafe(16)
    username = f"listing-{uuid.uuid4().hex[:8]}"
    [owner_id] = filler.users([(username, hash_password(password))])
    # The others never sign in: any string will do for their hash.
    others = filler.users(
        (f"other-{number}-{uuid.uuid4().hex[:6]}", "unused")
        for number in range(OTHER_USERS)
    )
    return username, password, owner_id, others


def fill_others(filler: Filler, args, owner_id: int, others: list) -> float:
    """The others' files and the user's unfinished ones; the seconds it took.

    The others' files spread over the same span of time as the user's largest
    count (odd seconds; the user's take the even ones); one in ten unfinished.
    """
    started = time.perf_counter()
    span = 2 * max(args.counts)
    step = max(1, span // max(args.others, 1))
    other_files = [
        (others[number % OTHER_USERS], second(1 + (number * step) % span))
        for number in range(args.others)
    ]
    filler.files(f for n, f in enumerate(other_files) if n % 10)
    filler.files((f for n, f in enumerate(other_files) if n % 10 == 0), False)
    filler.files(((owner_id, second(2 * n)) for n in range(HIDDEN_OWN_FILES)), False)
    return time.perf_counter() - started


def sign_in(app, username: str, password: str) -> str:
    """A Bearer token from ``GET /login`` with HTTP Basic credentials."""
    client = app.test_client()
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    signed_in = client.get("/login", headers={"Authorization": f"Basic {basic}"})
    if signed_in.status_code != 200:
        raise SetupError(f"GET /login answered {signed_in.status_code}")
    return signed_in.get_json()["token"]


class Listing:
    """The user's listing, signed in, timed as its files are added count by
    count; the statements of the last count timed, to be explained."""

    def __init__(self, app, filler: Filler, token: str, owner_id: int):
        """No files of the user's yet."""
        self.app = app
        self.filler = filler
        self.token = token
        self.owner_id = owner_id
        self.owned = 0
        self.statements = {}
        self.part_statements = {}

    def fill_to(self, count: int) -> float:
        """Add the user's finished files up to ``count``; the seconds it took."""
        filler, owner_id, owned = self.filler, self.owner_id, self.owned
        started = time.perf_counter()
        filler.files((owner_id, second(2 * n)) for n in range(owned, count))
        filler.analyze()
        fill_seconds = time.perf_counter() - started
        self.owned = count
        return fill_seconds

    def time_at(self, clock, count: int, requests: int, fill_seconds: float) -> dict:
        """The first and last pages' requests, and their parts timed apart, at
        ``count`` files: the count's step of the results."""
        last_page = math.ceil(count / per_page())
        paths = {"first": "/files", "last": f"/files?page={last_page}"}
        timed, self.statements, last_body = time_requests(
            self.app, clock, self.token, paths, requests
        )
        if last_body["total"] != count or not last_body["items"]:
            raise SetupError(f"GET /files does not list {count} files")
        parts, self.part_statements = time_parts(
            self.app,
            clock,
            self.owner_id,
            {"first": 0, "last": (last_page - 1) * per_page()},
            requests,
        )
        return {
            "files": count,
            "fill_seconds": fill_seconds,
            "last_page": last_page,
            **timed,
            "parts_ms": parts,
        }

    def chosen_statements(self, last_page: int) -> dict:
        """The statements of the last count timed whose plans are kept."""
        return {
            "page statement, page 1 (as the app sends it)": self.statements[
                ("first", "page")
            ],
            f"page statement, page {last_page} (as the app sends it)": (
                self.statements[("last", "page")]
            ),
            "OWNED_COUNT alone": self.part_statements["count_alone"],
        }


def print_step(step: dict) -> None:
    """One count's figures, as they come."""
    print(
        f"  {step['files']:,} files (filled in {step['fill_seconds']:.1f} s): page 1 "
        f"{step['first']['request']['median_ms']:.2f} ms, last page "
        f"{step['last']['request']['median_ms']:.2f} ms, count alone "
        f"{step['parts_ms']['count_alone']['median_ms']:.2f} ms",
        flush=True,
    )


def measure(args, scratch: Path) -> dict:
    """Fill the database count by count, and time the listing at each."""
    from models import db

    results = initial_results(args)
    with contextlib.ExitStack() as stack, hard_timeout(args.timeout):
        url = stack.enter_context(new_database(args, scratch, "lockbox_listing"))
        app = stack.enter_context(lockbox(url))
        results["config"]["database"] = database_name(url)
        filler = Filler(app)
        username, password, owner_id, others = make_users(filler)
        filled_seconds = fill_others(filler, args, owner_id, others)
        with app.app_context():
            engine = db.engine
        listing = Listing(app, filler, sign_in(app, username, password), owner_id)
        plans = {}
        with StatementClock(engine) as clock:
            for count in args.counts:
                fill_seconds = listing.fill_to(count)
                filled_seconds += fill_seconds
                step = listing.time_at(clock, count, args.requests, fill_seconds)
                results["steps"].append(step)
                print_step(step)
                if count == args.counts[-1]:
                    plans = explain(app, listing.chosen_statements(step["last_page"]))
        results["plans_at_files"] = args.counts[-1]
        results["plans"] = plans
        results["fill_seconds_total"] = filled_seconds
        results["rows_inserted"] = filler.inserted_rows
    return results


def ms(cell: dict | None) -> str:
    """A median (p90) cell."""
    if cell is None:
        return "–"
    return f"{cell['median_ms']:.2f} ({cell['p90_ms']:.2f})"


def ratio(value: dict | None, base: dict | None) -> str:
    """How many times the 10-file (first count's) median."""
    if value is None or base is None:
        return "–"
    return f"{value['median_ms'] / base['median_ms']:.2f}×"


def full_pages(steps: list) -> str:
    """Page 1's growth between the first and last counts that fill it: the
    same number of items, so only the number of files differs."""
    full = [step for step in steps if step["first"]["items"] == per_page()]
    if len(full) < 2 or full[0] is steps[0]:
        return ""
    low, high = full[0]["first"]["request"], full[-1]["first"]["request"]
    return (
        f" Between {full[0]['files']:,} and {full[-1]['files']:,} files, both "
        f"full pages of {per_page()}: "
        f"**{high['median_ms'] / low['median_ms']:.2f}×**."
    )


def report_intro(results: dict) -> str:
    """The paragraph that says how, where and on what the run measured."""
    config, host = results["config"], results["machine"]
    return (
        f"Measured {results['date']} on {host['cpus']} cores ({host['cpu_model']}; "
        f"load average {host['load_average_at_start']} at the start), "
        f"{config['database']}, in-process (Flask test client). The user's "
        f"finished files as counted below, plus {HIDDEN_OWN_FILES} unfinished, "
        f"and {config['others']:,} files of {config['other_users']} other users. "
        f"{config['requests']} timed requests per page and count, page 1 and the "
        f"last page taking turns, after {config['warmup_requests']} untimed; "
        "median (p90) in ms. Statement times are the driver's cursor.execute, "
        "from SQLAlchemy's cursor-execute events."
    )


def growth_table(steps: list) -> list[str]:
    """The requests' and the statements' times at each count, and how many
    times their time at the first count."""
    first = steps[0]
    lines = [
        "| files | page 1 ms | last page ms | count statement ms (alone) "
        "| page statement ms (page 1) | page 1 ÷ first count | last page ÷ first "
        "| count ÷ first | page statement ÷ first |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for step in steps:
        cells = {
            "page 1": (step["first"]["request"], first["first"]["request"]),
            "last": (step["last"]["request"], first["last"]["request"]),
            "count": (
                step["parts_ms"]["count_alone"],
                first["parts_ms"]["count_alone"],
            ),
            "statement": (
                step["first"]["statement_ms"].get("page"),
                first["first"]["statement_ms"].get("page"),
            ),
        }
        lines.append(
            f"| {step['files']:,} | {ms(cells['page 1'][0])} "
            f"({step['first']['items']} items) "
            f"| {ms(cells['last'][0])} (page {step['last_page']:,}, "
            f"{step['last']['items']} items) "
            f"| {ms(cells['count'][0])} | {ms(cells['statement'][0])} | "
            + " | ".join(ratio(*cell) for cell in cells.values())
            + " |"
        )
    return lines


def statement_table(steps: list) -> list[str]:
    """Each statement of a request at each count, and the parts timed apart."""
    lines = [
        "Each statement of a request, and the page statement's parts timed apart "
        "(median (p90) ms):",
        "",
        "| files | statements a request | token check (user + revoked) "
        "| page statement, page 1 | page statement, last page "
        "| count alone | page 1 rows without the count "
        "| last page rows without the count | other |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for step in steps:
        parts = step["parts_ms"]
        other = step["first"]["statement_ms"].get("other")
        lines.append(
            f"| {step['files']:,} | {step['first']['statements_per_request']:.0f} "
            f"| {ms(step['first']['statement_ms'].get('auth'))} "
            f"| {ms(step['first']['statement_ms'].get('page'))} "
            f"| {ms(step['last']['statement_ms'].get('page'))} "
            f"| {ms(parts['count_alone'])} | {ms(parts['rows_only_first'])} "
            f"| {ms(parts['rows_only_last'])} | {ms(other)} |"
        )
    return lines


def cpu_table(steps: list) -> list[str]:
    """The requesting thread's CPU time at each count."""
    first = steps[0]
    lines = [
        "CPU time of the requesting thread (median (p90) ms; with SQLite it holds "
        "the database's work too, with MariaDB only the app's and the driver's):",
        "",
        "| files | page 1 CPU ms | last page CPU ms | page 1 ÷ first count |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for step in steps:
        lines.append(
            f"| {step['files']:,} | {ms(step['first']['request_cpu'])} "
            f"| {ms(step['last']['request_cpu'])} "
            f"| {ratio(step['first']['request_cpu'], first['first']['request_cpu'])} |"
        )
    return lines


def target_line(results: dict) -> str:
    """Page 1's growth from the first count to the last, against the target,
    and how long filling took."""
    steps = results["steps"]
    first, last = steps[0], steps[-1]
    met = (
        last["first"]["request"]["median_ms"]
        <= TARGET_RATIO * first["first"]["request"]["median_ms"]
    )
    verdict = "met" if met else "missed"
    growth = (
        last["first"]["request"]["median_ms"] / first["first"]["request"]["median_ms"]
    )
    return (
        f"Page 1 at {last['files']:,} files ÷ at {first['files']:,}: "
        f"**{growth:.2f}×** "
        f"(target ≤ {TARGET_RATIO}×: {verdict})." + full_pages(steps) + " Filling took "
        f"{results['fill_seconds_total']:.1f} s for {results['rows_inserted']:,} "
        "rows."
    )


def plan_lines(results: dict) -> list[str]:
    """The plans kept at the largest count: each statement, its parameters, and
    a table per kind of plan (EXPLAIN, ANALYZE, EXPLAIN QUERY PLAN)."""
    lines = [f"Plans at {results['plans_at_files']:,} files:"]
    for name, plan in results["plans"].items():
        lines += ["", f"{name}:", "", "```sql", plan["sql"], "```"]
        lines.append(f"parameters: `{plan['parameters']}`")
        for prefix, table in plan.items():
            if prefix in ("sql", "parameters"):
                continue
            lines += [
                "",
                f"`{prefix}`:",
                "",
                "| " + " | ".join(table["columns"]) + " |",
                "|" + " --- |" * len(table["columns"]),
            ]
            lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    return lines


def report(results: dict) -> str:
    """A ready-to-paste Markdown summary."""
    steps = results["steps"]
    lines = [
        report_intro(results),
        "",
        *growth_table(steps),
        "",
        *statement_table(steps),
        "",
        *cpu_table(steps),
        "",
        target_line(results),
    ]
    if results["plans"]:
        lines += ["", *plan_lines(results)]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run it; 0 when page 1 stays flat, 1 when not, 2 when it could not run."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="lockbox-listing-") as scratch:
            results = measure(args, Path(scratch))
    except SetupError as error:
        print(f"The listing bench did not run through: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(report(results))
    print(f"\nJSON: {args.output}")
    steps = results["steps"]
    flat = (
        steps[-1]["first"]["request"]["median_ms"]
        <= TARGET_RATIO * steps[0]["first"]["request"]["median_ms"]
    )
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
