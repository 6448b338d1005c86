"""Command-line tasks: ``flask --app app init-db``, ``prepare``, ``users ...``,
``files gc``, ``tokens ...``, ``requests ...``, ``audit ...``, ``storage ...``."""

import json
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from flask_migrate import stamp, upgrade
from sqlalchemy import func

import audit
import email_links
import notifications
import oidc
import request_links
import sealing
import space
import startup
import storage_keys
import two_factor
import users
from config import (
    PAT_MAX_SECONDS,
    STORAGE_KEY_ID_RE,
    ConfigError,
    new_storage_key,
    parse_duration,
    parse_size,
)
from credentials import resealed_for
from errors import ApiError
from formats import format_size
from models import (
    ADMIN,
    MAX_INT_ID,
    ROLES,
    AccessEvent,
    Delivery,
    FileChunk,
    ResumableUpload,
    ShareDownload,
    StorageKey,
    StoredFile,
    UploadRequest,
    User,
    Webhook,
    db,
    retry_on_conflict,
    rowcount,
    utcnow,
)
from passwords import canonical_username
from personal_tokens import create_access_token, revoke, tokens_of
from quotas import quota_of, usage_of
from request_data import load_or_400
from request_links import new_request, received, request_url, status_of
from schemas import (
    EVENT_TYPES,
    SCOPES,
    email_settings_request_schema,
    file_request_create_schema,
)
from session_tokens import prune_revoked, revoke_all_tokens
from storage import delete_stored_files

MIN_PASSWORD_LENGTH = 8
R = TypeVar("R")

users_cli = AppGroup(
    "users", help="Create, list and delete the people who can sign in."
)
files_cli = AppGroup("files", help="Maintenance of stored files.")
tokens_cli = AppGroup(
    "tokens", help="Personal access tokens, and the token revocation list."
)
audit_cli = AppGroup(
    "audit", help="The audit log: verify its chain, export it, prune it."
)
requests_cli = AppGroup(
    "requests", help="Upload requests: links that let people send a user files."
)
storage_cli = AppGroup(
    "storage",
    help="The database's storage: encryption keys, re-sealing, space.",
)


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Bring the database schema up to date (safe to run again): ``db upgrade``."""
    existing = set(db.inspect(db.engine).get_table_names())
    model_tables = set(db.metadata.tables)
    if model_tables <= existing and "alembic_version" not in existing:
        # Tables made before migrations existed: they are the current schema.
        stamp()
    elif not model_tables & existing:
        # An empty database, perhaps with a stale version row: start from scratch.
        stamp(revision="base")
    upgrade()
    click.echo(f"Database ready: {db.engine.url.render_as_string(hide_password=True)}")


@click.command("prepare")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.IntRange(0, 3600),
    default=90,
    show_default=True,
    envvar="LOCKBOX_DB_WAIT",
    help="Seconds to wait for the database (and for its migrations).",
)
@click.option(
    "--migrations",
    type=click.Choice(["run", "wait"]),
    default="run",
    show_default=True,
    envvar="LOCKBOX_MIGRATIONS",
    help="Run them here, or wait for another instance to (a cluster's "
    "instances starting together wait for one migrate service).",
)
@click.option(
    "--bootstrap/--no-bootstrap",
    default=True,
    show_default=True,
    envvar="LOCKBOX_BOOTSTRAP",
    help="Create a first administrator when there is no user at all.",
)
@click.pass_context
@with_appcontext
def prepare_command(
    context: click.Context, wait_seconds: int, migrations: str, bootstrap: bool
) -> None:
    """Get the database ready for a new instance: wait until it answers, bring
    its schema up to date (or wait for that), create the first administrator.
    A container runs this at every start; each step does nothing when done."""
    try:
        startup.wait_for_database(wait_seconds, click.echo)
        if migrations == "run":
            context.invoke(init_db_command)
        else:
            startup.wait_for_schema(wait_seconds, click.echo)
    except startup.NotReady as error:
        raise click.ClickException(str(error)) from None
    if bootstrap:
        context.invoke(bootstrap_user)


def _find_user(name: str) -> User:
    """The user called ``name``, or a clean command-line error."""
    user = None
    if canonical_username(name) is not None:
        user = db.session.execute(
            db.select(User).filter_by(username=name)
        ).scalar_one_or_none()
    if user is None:
        raise click.ClickException(f"No user named {name!r}")
    return user


def _stdin_is_terminal() -> bool:
    """True when a person types at stdin (then passwords are prompted for)."""
    return sys.stdin.isatty()


def _read_password() -> str:
    """A new password: asked twice on a terminal, or one line read from a pipe."""
    if _stdin_is_terminal():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(
            f"The password must be at least {MIN_PASSWORD_LENGTH} characters long"
        )
    return password


def _check_username(name: str) -> None:
    """Refuse names that would be awkward in Basic auth, URLs or logs."""
    if canonical_username(name) is None:
        raise click.ClickException(
            "A username is 1-80 characters: letters, digits and _ . @ + - "
            "(not starting with punctuation)"
        )


def _api(work: Callable[[], R]) -> R:
    """``work``, with an ApiError as a clean command-line error."""
    try:
        return work()
    except ApiError as error:
        raise click.ClickException(str(error.description)) from None


@users_cli.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="user", show_default=True)
def create_user(name: str, role: str) -> None:
    """Create a user; the password is prompted for (or read from stdin)."""
    _check_username(name)
    password = _read_password()
    _api(lambda: users.create(name, role, password=password))
    click.echo(f"Created {'administrator' if role == ADMIN else 'user'} {name}")


@users_cli.command("bootstrap")
@click.option("--name", default="admin", show_default=True)
def bootstrap_user(name: str) -> None:
    """Create a first user, an administrator, with a generated password when
    there is no user at all."""
    if db.session.execute(db.select(User.id).limit(1)).first():
        click.echo("Users exist already; nothing to do.")
        return
    _check_username(name)
    password = secrets.token_urlsafe(12)
    users.create(name, ADMIN, password=password)
    click.echo(
        f"Created the first user, an administrator.\n  username: {name}\n"
        f"  password: {password}"
    )


@users_cli.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
def set_role(name: str, role: str) -> None:
    """Make a user an administrator, or a user again (their admin-scoped API
    tokens stop at once). The last administrator stays one."""
    user = _find_user(name)
    _api(lambda: users.set_role(user, role))
    click.echo(f"{name} is now {'an administrator' if role == ADMIN else 'a user'}")


@users_cli.command("disable")
@click.argument("name")
def disable_user(name: str) -> None:
    """Disable a user: nothing of theirs opens (sessions, API tokens, links,
    upload keys and requests) and they cannot sign in, until enabled again."""
    user = _find_user(name)
    _api(lambda: users.set_disabled(user, True))
    click.echo(f"{name} is disabled")


@users_cli.command("enable")
@click.argument("name")
def enable_user(name: str) -> None:
    """Enable a disabled user again."""
    user = _find_user(name)
    users.set_disabled(user, False)
    click.echo(f"{name} is enabled")


@users_cli.command("list")
def list_users() -> None:
    """List users with their role, how they sign in, file counts, storage
    used and quota."""
    rows = db.session.execute(
        db.select(User, func.count(StoredFile.id))
        .outerjoin(
            StoredFile, (StoredFile.owner_id == User.id) & StoredFile.kept(utcnow())
        )
        .group_by(User.id)
        .order_by(User.username)
    ).all()
    if not rows:
        click.echo("No users.")
    for user, count in rows:
        quota = quota_of(user)
        limit = "no quota" if quota is None else f"of {format_size(quota)}"
        ways = [
            *(["DISABLED"] if user.disabled_at is not None else []),
            *(["password"] if user.password_hash is not None else []),
            *(["single sign-on"] if user.oidc_subject is not None else []),
            *(["two-factor"] if user.totp_enabled_at is not None else []),
        ]
        click.echo(
            f"{user.username}\t{user.role}\t{' + '.join(ways)}"
            f"\tcreated {user.created_at:%Y-%m-%d %H:%M} UTC"
            f"\t{count} files\t{format_size(usage_of(user.id))} used {limit}"
        )


@users_cli.command("set-quota")
@click.argument("name")
@click.argument("size")
def set_quota(name: str, size: str) -> None:
    """Set how much a user may store: e.g. 10GiB or 500MB; 0 for no limit,
    "default" for STORAGE_QUOTA_BYTES."""
    user = _find_user(name)
    quota_bytes = None
    if size.strip().lower() != "default":
        try:
            quota_bytes = parse_size(size)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="SIZE") from None
    _api(lambda: users.set_quota(user, quota_bytes))
    quota = quota_of(user)
    click.echo(
        f"Quota for {name}: " + ("none" if quota is None else format_size(quota))
    )


@users_cli.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_user(name: str, yes: bool) -> None:
    """Delete a user and every file they own."""
    user = _find_user(name)
    if not yes and _stdin_is_terminal():
        click.confirm(f"Delete {name} and all their files?", abort=True)
    _api(lambda: users.delete(user))
    click.echo(f"Deleted user {name}")


@users_cli.command("set-password")
@click.argument("name")
def set_password(name: str) -> None:
    """Give a user a new password (prompted for, or read from stdin)."""
    user = _find_user(name)
    # A new password signs the user out everywhere.
    users.set_password(user, _read_password())
    click.echo(f"Password changed for {name}")


@users_cli.command("reset-two-factor")
@click.argument("name")
def reset_two_factor(name: str) -> None:
    """Turn a user's two-factor sign-in off (a lost phone and no recovery
    code left): they sign in with the password alone, and set it up again.
    Signs them out everywhere."""
    user = _find_user(name)
    two_factor.turn_off(user)
    revoke_all_tokens(user)
    db.session.commit()
    audit.record("two_factor.disabled", audit.target_user(user), "reset")
    click.echo(f"Two-factor sign-in turned off for {name}")
    click.echo(
        "If the password may be known to someone else, give a new one too "
        f"(users set-password {name}) before they set it up again.",
        err=True,
    )


@files_cli.command("gc")
@click.option(
    "--idle",
    default=3600,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seconds an unfinished form upload may sit without new chunks before removal.",
)
def collect_garbage(idle: int) -> None:
    """Remove unfinished uploads (and their chunks) left by crashes or outages,
    resumable uploads past their expiry, and access log rows and finished
    notifications older than ACCESS_LOG_DAYS."""
    now = utcnow()
    cutoff = now - timedelta(seconds=idle)
    upload_files = db.select(ResumableUpload.file_id)
    live_uploads = upload_files.where(ResumableUpload.expires_at > now)
    # File rows first: a writer still adding chunks then fails on the foreign key
    # instead of leaving chunks behind. A resumable upload that has not expired
    # stays, however long it has been idle.
    removed = rowcount(
        db.session.execute(
            db.delete(StoredFile).where(
                StoredFile.complete.is_(False),
                # Idle form uploads, and resumable uploads that expired.
                (StoredFile.updated_at <= cutoff) | StoredFile.id.in_(upload_files),
                StoredFile.id.not_in(live_uploads),
            )
        )
    )
    orphans = rowcount(
        db.session.execute(
            db.delete(FileChunk).where(~FileChunk.file_id.in_(db.select(StoredFile.id)))
        )
    )
    # A finished upload's URL lives as long as it would have: then only the
    # URL goes, the file stays.
    db.session.execute(
        db.delete(ResumableUpload).where(ResumableUpload.expires_at <= now)
    )
    # The access log is kept for ACCESS_LOG_DAYS.
    kept = timedelta(days=current_app.config["ACCESS_LOG_DAYS"])
    db.session.execute(db.delete(AccessEvent).where(AccessEvent.at <= now - kept))
    # So are the messages sent (or given up on); pending ones stay.
    db.session.execute(
        db.delete(Delivery).where(
            Delivery.status != "pending", Delivery.created_at <= now - kept
        )
    )
    # Counted share downloads are kept only while they may be resumed.
    resumable = timedelta(seconds=current_app.config["SHARE_RESUME_SECONDS"])
    db.session.execute(
        db.delete(ShareDownload).where(ShareDownload.started_at <= now - resumable)
    )
    db.session.commit()
    expired = _remove_expired(now)
    click.echo(f"Removed {removed} unfinished uploads and {orphans} orphan chunks")
    click.echo(f"Removed {expired} expired files")
    current_app.logger.info(
        "files gc removed %d expired files, %d uploads, %d chunks",
        expired,
        removed,
        orphans,
    )
    freed = space.release_free_pages()
    if freed:
        click.echo(f"Gave {format_size(freed)} of free pages back to the file system")


def _remove_expired(now: datetime) -> int:
    """Delete the files whose lifetime ended before ``now``, a file per
    transaction (a Galera write set stays a file's rows, and the owner's
    count and quota already left them out at their expiry)."""
    # Finished files only: an upload still arriving is the unfinished
    # uploads' rule's to remove, when it stalls or its own expiry passes.
    expired = list(
        db.session.execute(
            db.select(StoredFile.id).where(
                StoredFile.expires_at <= now, StoredFile.complete.is_(True)
            )
        ).scalars()
    )
    db.session.rollback()
    for file_id in expired:
        retry_on_conflict(
            lambda file_id=file_id: delete_stored_files(StoredFile.id == file_id)
        )()
    return len(expired)


def _scopes(value: str) -> list[str]:
    """--scopes: comma- or space-separated scopes, each one of SCOPES."""
    scopes = [scope for scope in value.replace(",", " ").split() if scope]
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        raise click.BadParameter(
            f"give one or more of {', '.join(SCOPES)}"
            + (f" (not {', '.join(unknown)})" if unknown else "")
        )
    return scopes


def _lifetime(value: str) -> int | None:
    """--expires-in: a duration such as 30d, or "never"."""
    if value.strip().lower() == "never":
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if not 60 <= seconds <= PAT_MAX_SECONDS:
        raise click.BadParameter("must be from 1 minute to 365 days")
    return seconds


@tokens_cli.command("create")
@click.argument("name")
@click.option("--name", "token_name", required=True, help="What the token is for.")
@click.option(
    "--scopes",
    required=True,
    help=f"Comma-separated, any of: {', '.join(SCOPES)}.",
)
@click.option(
    "--expires-in",
    default="90d",
    show_default=True,
    help='e.g. 3600, 12h, 30d, 52w; "never" only with PAT_ALLOW_NO_EXPIRY.',
)
def create_token(name: str, token_name: str, scopes: str, expires_in: str) -> None:
    """Make a personal access token for a user and print it (shown once)."""
    user = _find_user(name)
    scope_list = _scopes(scopes)
    lifetime = _lifetime(expires_in)
    if not 1 <= len(token_name.strip()) <= 80:
        raise click.BadParameter("must be 1 to 80 characters", param_hint="--name")
    try:
        access_token, token = create_access_token(
            user, token_name.strip(), scope_list, lifetime
        )
    except (ValueError, ApiError) as error:
        raise click.ClickException(getattr(error, "description", str(error))) from None
    expiry = access_token.expires_at
    click.echo(token)
    click.echo(
        f"Token {access_token.id} ({access_token.name}) for {name}: "
        f"{access_token.scopes}, "
        + (f"expires {expiry:%Y-%m-%d %H:%M} UTC" if expiry else "never expires")
        + ". Copy it now: it is not shown again.",
        err=True,
    )


@tokens_cli.command("list")
@click.argument("name")
def list_tokens(name: str) -> None:
    """List a user's personal access tokens (never the tokens themselves)."""
    tokens = tokens_of(_find_user(name))
    if not tokens:
        click.echo("No tokens.")
    for access_token in tokens:
        expiry = access_token.expires_at
        used = access_token.last_used_at
        click.echo(
            f"{access_token.id}\t{access_token.name}\t{access_token.prefix}...\t"
            f"{access_token.scopes}\t"
            + (f"expires {expiry:%Y-%m-%d}" if expiry else "never expires")
            + "\t"
            + (f"last used {used:%Y-%m-%d %H:%M} UTC" if used else "never used")
        )


@tokens_cli.command("revoke")
@click.argument("name")
@click.argument("token_id", type=int)
def revoke_token(name: str, token_id: int) -> None:
    """Revoke one of a user's personal access tokens, by its id."""
    try:
        access_token = revoke(_find_user(name), token_id)
    except ApiError:
        raise click.ClickException(f"{name} has no token {token_id}") from None
    click.echo(f"Revoked token {token_id} ({access_token.name})")


@tokens_cli.command("prune")
def prune_tokens() -> None:
    """Forget revocations of tokens that have expired anyway."""
    removed = prune_revoked()
    db.session.commit()
    click.echo(f"Removed {removed} expired revocations")


@requests_cli.command("create")
@click.argument("name")
@click.option("--title", required=True, help="What you ask for.")
@click.option("--note", default="", help="A note for whoever sends the files.")
@click.option("--expires-in", default="7d", show_default=True, help="e.g. 12h, 7d.")
@click.option("--max-files", type=click.IntRange(1, 100_000), help="At most this many.")
@click.option("--max-bytes", help="At most this much in all, e.g. 2GiB.")
@click.option("--types", "allowed_types", help="Only these kinds: '.pdf, image/*'.")
@click.option(
    "--password", is_flag=True, help="Ask for a password the sender must give."
)
@click.option(
    "--base-url",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="The address people reach Lockbox at, for the link printed.",
)
def create_request(
    name: str,
    title: str,
    note: str,
    expires_in: str,
    max_files: int | None,
    max_bytes: str | None,
    allowed_types: str | None,
    password: bool,
    base_url: str,
) -> None:
    """Make an upload request for a user and print its link."""
    user = _find_user(name)
    settings: dict = {"title": title, "note": note}
    try:
        settings["expires_in"] = parse_duration(expires_in)
        if max_bytes is not None:
            settings["max_bytes"] = parse_size(max_bytes)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if max_files is not None:
        settings["max_files"] = max_files
    if allowed_types is not None:
        settings["allowed_types"] = allowed_types
    if password:
        settings["password"] = _read_password()
    try:
        checked = load_or_400(file_request_create_schema, settings)
    except ApiError as error:
        raise click.ClickException(error.description or "") from None
    config = current_app.config
    if checked["expires_in"] > config["SHARE_MAX_SECONDS"]:
        raise click.BadParameter(
            "longer than SHARE_MAX_SECONDS", param_hint="--expires-in"
        )
    most = config["REQUEST_MAX_BYTES"]
    if checked.get("max_bytes", most) > most:
        raise click.BadParameter(
            "more than REQUEST_MAX_BYTES", param_hint="--max-bytes"
        )
    upload_request = _api(
        lambda: new_request(
            user,
            checked["title"],
            checked.get("note", ""),
            checked["expires_in"],
            checked.get("max_bytes", most),
            checked.get("password"),
            checked.get("max_files"),
            checked.get("allowed_types"),
        )
    )
    db.session.add(upload_request)
    db.session.commit()
    audit.record("request.created", request_links.target_of(upload_request))
    with current_app.test_request_context(base_url=base_url):
        click.echo(request_url(upload_request))
    click.echo(f"Request {upload_request.id} ({title}) for {name}.", err=True)


@requests_cli.command("list")
@click.argument("name")
def list_requests(name: str) -> None:
    """List a user's upload requests: id, state, what arrived, title."""
    user = _find_user(name)
    found = db.session.execute(
        db.select(UploadRequest).filter_by(owner_id=user.id).order_by(UploadRequest.id)
    ).scalars()
    shown = False
    for upload_request in found:
        shown = True
        files, taken = received(upload_request)
        click.echo(
            f"{upload_request.id}\t{status_of(upload_request, user)}\t"
            f"{files} files, {format_size(taken)}\t"
            f"until {upload_request.expires_at:%Y-%m-%d %H:%M} UTC\t"
            f"{upload_request.title}"
        )
    if not shown:
        click.echo("No upload requests.")


@requests_cli.command("close")
@click.argument("name")
@click.argument("request_id", type=int)
def close_request(name: str, request_id: int) -> None:
    """Close a user's upload request: its link takes nothing more."""
    user = _find_user(name)
    upload_request = None
    if 1 <= request_id <= MAX_INT_ID:
        upload_request = db.session.get(UploadRequest, request_id)
    if upload_request is None or upload_request.owner_id != user.id:
        raise click.ClickException(f"{name} has no upload request {request_id}")
    request_links.close(upload_request)
    click.echo(f"Request {request_id} ({upload_request.title}) closed")


@users_cli.command("set-email")
@click.argument("name")
@click.argument("email")
@click.option(
    "--base-url",
    required=True,
    help="Where the server is reached, for the confirmation link "
    "(e.g. https://files.example.org).",
)
@click.option(
    "--events",
    default=" ".join(EVENT_TYPES),
    show_default=True,
    help="The events told there, space- or comma-separated.",
)
def set_email(name: str, email: str, base_url: str, events: str) -> None:
    """Set a user's e-mail address: it is sent a link to confirm it, and
    nothing else until the user opens it, signed in."""
    user = _find_user(name)
    try:
        settings = load_or_400(
            email_settings_request_schema,
            {"email": email, "events": events.replace(",", " ").split()},
        )
    except ApiError as error:
        raise click.ClickException(str(error.description)) from None
    if not current_app.config["SMTP_URL"]:
        raise click.ClickException("This server sends no e-mail: set SMTP_URL")
    user.email = settings["email"]
    user.email_events = " ".join(e for e in EVENT_TYPES if e in settings["events"])
    user.email_confirmed_at = None
    token = email_links.confirmation_token(user)
    url = f"{base_url.rstrip('/')}/account/email/confirm/{token}"
    notifications.ask_to_confirm(user, url)
    db.session.commit()
    click.echo(f"A link to confirm it is on its way to {user.email}")


notify_cli = AppGroup("notify", help="Webhook and e-mail deliveries.")


@notify_cli.command("run")
@click.option("--once", is_flag=True, help="One pass, then stop (for cron).")
def notify_run(once: bool) -> None:
    """Send the webhook deliveries that are due, and tell of links and
    requests that expired unused; every NOTIFY_POLL_SECONDS until stopped
    (for an operator who runs it under systemd or cron rather than in the
    app's processes: NOTIFY_IN_BACKGROUND=0)."""
    if once:
        sent = notifications.run_once()
        click.echo(f"{sent} deliveries attempted")
        return
    notifications.run_forever(current_app.config["NOTIFY_POLL_SECONDS"])


@audit_cli.command("verify")
def audit_verify() -> None:
    """Walk the audit log's chain: any row edited, or deleted from the middle
    or the old end, is reported, and the command fails."""
    checked, problems, (seq, last_hash) = audit.verify()
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise click.ClickException(
            f"The audit log was tampered with: {len(problems)} problems "
            f"in {checked} rows"
        )
    click.echo(f"The audit log's chain holds: {checked} rows")
    if checked:
        click.echo(f"It ends at row {seq}, hash {last_hash}")


@audit_cli.command("export")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Only rows from this time on (UTC).",
)
def audit_export(since: datetime | None) -> None:
    """Write the audit log (since a time) as JSON lines, oldest first, with
    each row's hashes, so a copy can be verified elsewhere."""
    moment = None if since is None else since.replace(tzinfo=UTC)
    for row in audit.in_order(moment):
        click.echo(json.dumps(audit.as_dict(row), ensure_ascii=True))


@audit_cli.command("prune")
def audit_prune() -> None:
    """Delete audit rows older than AUDIT_DAYS from the oldest end; the chain
    still verifies (run it daily with the other maintenance commands)."""
    days = current_app.config["AUDIT_DAYS"]
    gone = audit.prune(utcnow() - timedelta(days=days))
    click.echo(f"Pruned {gone} audit rows older than {days} days")


@storage_cli.command("new-key")
@click.argument("key_id")
def storage_new_key(key_id: str) -> None:
    """Print a STORAGE_KEYS entry with a new random 256-bit key, marked
    current (*): add it to every instance, keeping the keys already there
    (docs/deploy.md)."""
    if not STORAGE_KEY_ID_RE.match(key_id):
        raise click.BadParameter(
            "1-32 letters, digits, '.', '_' or '-' (a date is a good id: 2026-12)",
            param_hint="KEY_ID",
        )
    click.echo(new_storage_key(key_id))


# The secrets kept sealed (besides the chunks): (model, column, the column
# that names their owner, how one is re-sealed).
SEALED_SECRETS: list[tuple[type, str, str, Callable[[int, str], str | None]]] = [
    (
        User,
        "totp_secret",
        "id",
        lambda owner, kept: resealed_for(owner, two_factor.SECRET_PURPOSE, kept),
    ),
    (
        User,
        "oidc_refresh_token",
        "id",
        lambda owner, kept: resealed_for(owner, oidc.REFRESH_PURPOSE, kept),
    ),
    (Webhook, "secret", "owner_id", notifications.resealed_secret),
]


@storage_cli.command("keys")
def storage_keys_command() -> None:
    """The storage keys: configured, recorded in the database, current or
    retired, and how many chunks each seals (a scan of the chunk table)."""
    configured = current_app.config.get("STORAGE_KEYS") or {}
    current = sealing.current_key_id()
    counts = dict(
        db.session.execute(
            db.select(FileChunk.key_id, func.count()).group_by(FileChunk.key_id)
        ).all()
    )
    recorded = {
        row.id: row for row in db.session.execute(db.select(StorageKey)).scalars()
    }
    if None in counts:
        click.echo(f"(in clear): {counts[None]} chunks")
    for key_id in sorted(set(configured) | set(recorded)):
        row = recorded.get(key_id)
        notes = [
            "current" if key_id == current else "",
            "configured" if key_id in configured else "NOT CONFIGURED",
            "retired" if row is not None and row.retired_at else "",
            "" if row is not None else "not yet recorded",
        ]
        shown = ", ".join(note for note in notes if note)
        click.echo(f"{key_id}: {counts.get(key_id, 0)} chunks ({shown})")
    if not configured:
        click.echo("Encryption at rest is off: STORAGE_KEYS is not set")


@storage_cli.command("rekey")
def storage_rekey() -> None:
    """Re-seal every chunk and kept secret under the current storage key, in
    small transactions, while the app serves; then mark retired the keys
    nothing is sealed under any more (they may leave STORAGE_KEYS). Stopped,
    it goes on where it was the next time."""
    try:
        storage_keys.ready()
        to_do = storage_keys.chunks_to_reseal()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    current = sealing.current_key_id()
    if current is None:
        raise click.ClickException(
            "STORAGE_KEYS is not set: there is no key to seal under"
        )
    click.echo(f"{to_do} chunks to re-seal under key {current!r}")

    def report(done: int) -> None:
        share = f" ({100 * done // to_do} %)" if to_do else ""
        click.echo(f"  {done} of {to_do} chunks re-sealed{share}")

    done = storage_keys.rekey_chunks(report)
    click.echo(f"{done.resealed} chunks re-sealed")
    if done.changed:
        click.echo(
            f"{done.changed} chunks were written again while re-sealing (an "
            "upload going on): sealed by their writer, or by the next run"
        )
    secrets_done = sum(
        storage_keys.reseal_secrets(model, column, owner, reseal)
        for model, column, owner, reseal in SEALED_SECRETS
    )
    click.echo(f"{secrets_done} kept secrets re-sealed")
    for key_id in storage_keys.unused_keys(_sealed_columns()):
        click.echo(
            f"Key {key_id!r} seals nothing: once every instance seals under "
            f"{current!r}, retire it (flask storage retire {key_id}) and take "
            "it out of STORAGE_KEYS"
        )
    left = storage_keys.chunks_to_reseal()
    if done.damaged:
        for file_id, seq in done.damaged:
            click.echo(f"file {file_id}, chunk {seq}: damaged, left as it is", err=True)
    if done.damaged or left:
        raise click.ClickException(
            f"{left} chunks are not under key {current!r} yet"
            + (f", {len(done.damaged)} of them damaged" if done.damaged else "")
            + ": run it again (damaged ones need a restore)"
        )
    click.echo(f"Every chunk is sealed under key {current!r}")


def _sealed_columns() -> list:
    """The columns that keep sealed secrets."""
    return [getattr(model, column) for model, column, _, _ in SEALED_SECRETS]


@storage_cli.command("retire")
@click.argument("key_id")
def storage_retire(key_id: str) -> None:
    """Retire a storage key that seals nothing any more (after `storage
    rekey`): it may then leave STORAGE_KEYS on every instance, and none may
    make it current again. Refused while anything is sealed under it."""
    try:
        storage_keys.ready()
        storage_keys.retire(key_id, _sealed_columns())
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Key {key_id!r} is retired: take it out of STORAGE_KEYS everywhere")


@storage_cli.command("report")
def storage_report() -> None:
    """Per table: the space the database has allocated to it against the
    space its rows use (MariaDB: information_schema; SQLite: the file's
    pages), and what a compaction would give back."""
    for table in space.report():
        click.echo(
            f"{table.name}: {format_size(table.allocated)} allocated, "
            f"{format_size(table.used)} used, {format_size(table.free)} free"
        )


@storage_cli.command("compact")
@click.option(
    "--min-free",
    default=0.10,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Rebuild only when at least this share of the table is free.",
)
@click.option(
    "--galera-method",
    type=click.Choice(["rsu", "toi"], case_sensitive=False),
    help="On a Galera node (required there): rsu rebuilds this node alone, "
    "toi every node at once while every write on the cluster waits.",
)
def storage_compact(min_free: float, galera_method: str | None) -> None:
    """Give the chunk table's free space back to the file system: on MariaDB
    an online rebuild (ALTER TABLE ... FORCE, ALGORITHM=INPLACE, LOCK=NONE;
    on Galera see docs/deploy.md first), on SQLite the free pages."""
    try:
        click.echo(space.compact(min_free, galera_method))
    except (space.Busy, space.ChooseMethod) as error:
        raise click.ClickException(str(error)) from None


@storage_cli.command("vacuum")
def storage_vacuum() -> None:
    """SQLite only, once per database made before incremental auto-vacuum:
    convert it (a full VACUUM, which needs the app stopped and free disk
    space the size of the database); afterwards `files gc` gives free pages
    back by itself."""
    try:
        click.echo(space.convert_sqlite())
    except space.Busy as error:
        raise click.ClickException(str(error)) from None


def init_app(app: Flask) -> None:
    """Register the commands on the app."""
    app.cli.add_command(tokens_cli)
    app.cli.add_command(init_db_command)
    app.cli.add_command(prepare_command)
    app.cli.add_command(users_cli)
    app.cli.add_command(files_cli)
    app.cli.add_command(requests_cli)
    app.cli.add_command(notify_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(storage_cli)
