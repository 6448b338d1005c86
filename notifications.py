"""Being told: each account's webhooks hear of its events, durably.

An event (a link downloaded, files arriving through an upload request, a
request filled or closed, a link or request expired unused) becomes one
``Delivery`` row per enabled webhook that hears it, written in the
transaction of what it tells: a file's arrival in the transaction that makes
the file visible (storage.when_finished), a download in the one that counts
it. Nothing is sent in the request that caused it.

Sending: each app process runs a thread that, every NOTIFY_POLL_SECONDS,
leases the deliveries that are due (a conditional UPDATE per row, so that of
several instances exactly one sends each attempt; a lease lapses if its
holder dies) and POSTs them (webhook_http: HTTPS to public addresses only,
no redirects). ``flask notify run`` does the same for operators who prefer
cron or systemd. Bodies are signed per Standard Webhooks (the
``standardwebhooks`` library): ``webhook-id`` stays the same on every attempt,
so receivers drop repeats. A delivery that is not answered with a 2xx is
tried again on the Standard Webhooks schedule (5 s, 5 min, 30 min, 2 h,
5 h, 10 h, 10 h: about a day), then marked failed; its owner may send it
again.

Files arriving through an upload request are told in one message per
guest visit: a file that arrives while the last message about the request is
still waiting (REQUEST_BATCH_SECONDS after its last file) joins it.
"""

import base64
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app, render_template, request
from standardwebhooks import Webhook as Signer

import audit
import mail
import sealing
import storage
import storage_keys
import webhook_http
from models import (
    Delivery,
    Share,
    StoredFile,
    UploadRequest,
    User,
    Webhook,
    db,
    retry_on_conflict,
    rowcount,
    utcnow,
)
from schemas import EVENT_TYPES

(
    LINK_DOWNLOADED,
    LINK_EXPIRED_UNUSED,
    REQUEST_RECEIVED,
    REQUEST_FILLED,
    REQUEST_CLOSED,
    REQUEST_EXPIRED_UNUSED,
) = EVENT_TYPES
# Seconds before each attempt after the first (Standard Webhooks' schedule).
RETRY_AFTER = (5, 300, 1800, 7200, 18000, 36000, 36000)
ATTEMPTS = len(RETRY_AFTER) + 1
# How long an instance holds the deliveries it sends.
LEASE_SECONDS = 60
# A guest's visit: files arriving with pauses shorter than this; and the
# downloads of a link told together.
REQUEST_BATCH_SECONDS = 60
LINK_BATCH_SECONDS = 10
# The files, or downloads, one message lists at most (it counts them all).
MAX_LISTED = 100
# Deliveries one pass leases at most, and sends at once.
BATCH = 20
SENDERS = 4
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# Not an event: the message that confirms an address, sent to it alone.
EMAIL_CONFIRM = "email.confirm"
SUBJECTS = {
    EMAIL_CONFIRM: "Confirm your e-mail address for Lockbox",
    LINK_DOWNLOADED: "Someone downloaded through your link",
    LINK_EXPIRED_UNUSED: "Your link expired without a download",
    REQUEST_RECEIVED: "Files arrived through your upload request",
    REQUEST_FILLED: "Your upload request has all its files",
    REQUEST_CLOSED: "Your upload request was closed",
    REQUEST_EXPIRED_UNUSED: "Your upload request expired with nothing sent",
}
SECRET_BYTES = 32


# What a webhook's secret is sealed for (sealing.py), bound to its owner.
WEBHOOK_SECRET_PURPOSE = "webhook secret"


def new_secret() -> str:
    """A webhook's signing secret, as Standard Webhooks writes one."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sealed_secret(owner_id: int, secret: str) -> str:
    """A webhook's signing secret as the database keeps it: sealed under the
    current storage key (as it is when encryption is off)."""
    storage_keys.ready()
    return sealing.keys().seal_secret(WEBHOOK_SECRET_PURPOSE, owner_id, secret)


def webhook_secret(webhook: Webhook) -> str:
    """A webhook's signing secret, opened; sealing.DamagedData if it does not
    open here (a secret kept in clear before encryption was on: as it is)."""
    return sealing.keys().open_secret(
        WEBHOOK_SECRET_PURPOSE, webhook.owner_id, webhook.secret
    )


def resealed_secret(owner_id: int, kept: str) -> str | None:
    """A kept webhook secret sealed under the current key; None when it
    already is, or does not open (storage_keys.reseal_secrets)."""
    keys = sealing.keys()
    if keys.current is None or sealing.sealed_key_id(kept) == keys.current:
        return None
    try:
        secret = keys.open_secret(WEBHOOK_SECRET_PURPOSE, owner_id, kept)
    except sealing.DamagedData:
        return None
    return sealed_secret(owner_id, secret)


def _listening(owner_id: int, event_type: str) -> list[Webhook]:
    """The owner's enabled webhooks that hear ``event_type``."""
    return [
        webhook
        for webhook in db.session.execute(
            db.select(Webhook).filter_by(owner_id=owner_id, enabled=True)
        ).scalars()
        if event_type in webhook.events.split()
    ]


def _targets(owner_id: int, event_type: str) -> list[dict[str, Any]]:
    """Where an event goes: each enabled webhook of the owner's that hears
    it, and the owner's confirmed address if they are told it by e-mail (and
    this server sends e-mail); nowhere while an administrator has the
    account disabled."""
    owner = db.session.get(User, owner_id)
    if owner is not None and owner.disabled_at is not None:
        return []
    targets: list[dict[str, Any]] = [
        {"webhook_id": webhook.id} for webhook in _listening(owner_id, event_type)
    ]
    if (
        owner is not None
        and owner.email
        and owner.email_confirmed_at is not None
        and event_type in owner.email_events.split()
        and current_app.config["SMTP_URL"]
    ):
        targets.append({"user_id": owner.id, "email_to": owner.email})
    return targets


def _body(event_type: str, data: dict[str, Any]) -> str:
    """An event's JSON body: its type, when, and what it is about."""
    document = {"type": event_type, "timestamp": utcnow().isoformat(), "data": data}
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def emit(owner_id: int, event_type: str, data: dict[str, Any]) -> None:
    """Queue an event for the owner's webhooks that hear it, in the current
    transaction (the caller commits)."""
    now = utcnow()
    for target in _targets(owner_id, event_type):
        db.session.add(
            Delivery(
                **target,
                message_id="msg_" + secrets.token_hex(16),
                event_type=event_type,
                payload=_body(event_type, data),
                created_at=now,
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
            )
        )


def _file(stored_file: StoredFile) -> dict[str, Any]:
    """A file as events describe it."""
    return {
        "id": stored_file.id,
        "filename": stored_file.filename,
        "size": stored_file.size,
        "sha256": stored_file.sha256,
    }


def _request(upload_request: UploadRequest) -> dict[str, Any]:
    """An upload request as events describe it."""
    return {
        "id": upload_request.id,
        "title": upload_request.title,
        "expires_at": upload_request.expires_at.isoformat(),
    }


def link_downloaded(share_id: int, what: str) -> None:
    """A client took one of a link's downloads (its first claim), in the
    transaction that counted it: what, the count now, and who (the address
    behind the configured proxies, the user agent). Downloads coming close
    together are told in one message (LINK_BATCH_SECONDS), which lists the
    first MAX_LISTED of them and the count: a flood of downloads is a few
    messages, not one each."""
    share = db.session.get(Share, share_id)
    if share is None:
        return
    fetch = {
        "what": what,
        "address": request.remote_addr or "",
        "user_agent": request.user_agent.string[:255],
        "at": utcnow().isoformat(),
    }
    link = {
        "id": share.id,
        "downloads": share.downloads,
        "max_downloads": share.max_downloads,
    }

    def join(data: dict[str, Any]) -> None:
        data["link"] = link
        if len(data["fetches"]) < MAX_LISTED:
            data["fetches"].append(fetch)

    _batched(
        share.owner_id,
        LINK_DOWNLOADED,
        f"link:{share.id}",
        LINK_BATCH_SECONDS,
        {"link": link, "fetches": [fetch]},
        join,
    )


def ask_to_confirm(user: User, url: str) -> None:
    """Queue the message that asks ``user`` to confirm their address by
    opening ``url`` (the caller commits): the one thing ever sent to an
    address not yet confirmed."""
    now = utcnow()
    db.session.add(
        Delivery(
            user_id=user.id,
            email_to=user.email,
            message_id="msg_" + secrets.token_hex(16),
            event_type=EMAIL_CONFIRM,
            payload=_body(EMAIL_CONFIRM, {"url": url, "username": user.username}),
            created_at=now,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
        )
    )


def request_closed(upload_request: UploadRequest) -> None:
    """The owner closed an upload request."""
    emit(upload_request.owner_id, REQUEST_CLOSED, {"request": _request(upload_request)})


def _batched(
    owner_id: int,
    event_type: str,
    key: str,
    seconds: int,
    data: dict[str, Any],
    join: Callable[[dict[str, Any]], None],
) -> None:
    """Queue an event that gathers with its like: where a message about
    ``key`` still waits, ``join`` adds to its data and it waits ``seconds``
    more (but never more than five times that since it began); else a new
    one, sent ``seconds`` from now."""
    now = utcnow()
    due = now + timedelta(seconds=seconds)
    for target in _targets(owner_id, event_type):
        same_target = [
            getattr(Delivery, column) == value for column, value in target.items()
        ]
        waiting = db.session.execute(
            db.select(Delivery)
            .where(
                *same_target,
                Delivery.batch_key == key,
                Delivery.status == PENDING,
                Delivery.attempts == 0,
                Delivery.lease_until.is_(None),
                Delivery.next_attempt_at > now,
            )
            .with_for_update()
        ).scalar_one_or_none()
        if waiting is not None:
            document = json.loads(waiting.payload)
            join(document["data"])
            waiting.payload = json.dumps(
                document, separators=(",", ":"), sort_keys=True
            )
            latest = waiting.created_at + timedelta(seconds=5 * seconds)
            waiting.next_attempt_at = min(due, latest)
            continue
        db.session.add(
            Delivery(
                **target,
                message_id="msg_" + secrets.token_hex(16),
                event_type=event_type,
                batch_key=key,
                payload=_body(event_type, data),
                created_at=now,
                status=PENDING,
                attempts=0,
                next_attempt_at=due,
            )
        )


def _file_arrived(stored_file: StoredFile) -> None:
    """A file finished through an upload request: told with the rest of the
    guest's visit, and the request's filling told once."""
    if stored_file.request_id is None:
        return
    upload_request = db.session.get(UploadRequest, stored_file.request_id)
    if upload_request is None:
        return
    arrived = _file(stored_file)

    def join(data: dict[str, Any]) -> None:
        if len(data["files"]) < MAX_LISTED:
            data["files"].append(arrived)
        data["received"] = data.get("received", 1) + 1

    _batched(
        upload_request.owner_id,
        REQUEST_RECEIVED,
        f"request:{upload_request.id}",
        REQUEST_BATCH_SECONDS,
        {"request": _request(upload_request), "files": [arrived], "received": 1},
        join,
    )
    if upload_request.max_files is not None and not upload_request.filled_noticed:
        count = db.session.execute(
            db.select(db.func.count())
            .select_from(StoredFile)
            .where(StoredFile.request_id == upload_request.id, StoredFile.complete)
        ).scalar_one()
        if count >= upload_request.max_files and _mark(
            UploadRequest, upload_request.id, "filled_noticed"
        ):
            emit(
                upload_request.owner_id,
                REQUEST_FILLED,
                {"request": _request(upload_request)},
            )


storage.when_finished(_file_arrived)


def _mark(model: type[Share] | type[UploadRequest], row_id: int, flag: str) -> bool:
    """Set a row's notice flag if no one has: whether this transaction did."""
    column = getattr(model, flag)
    return (
        rowcount(
            db.session.execute(
                db.update(model)
                .where(model.id == row_id, column.is_(False))
                .values({flag: True})
            )
        )
        == 1
    )


def notice_expired(limit: int = 100) -> int:
    """Notice the links and upload requests that expired, each once: the
    audit log has a row for each, and the owners of those that expired
    unused (never downloaded; nothing received) are told; how many were."""
    told, expired = _notice_expired(limit)
    for event, target in expired:
        audit.record(event, target, actor=audit.SERVER)
    return told


@retry_on_conflict
def _notice_expired(limit: int) -> tuple[int, list[tuple[str, str]]]:
    """notice_expired's transaction: how many owners were told, and the
    audit log's rows to write once it commits."""
    now = utcnow()
    told = 0
    expired: list[tuple[str, str]] = []
    links = db.session.execute(
        db.select(Share)
        .where(
            Share.expires_at <= now,
            Share.expiry_noticed.is_(False),
            Share.revoked_at.is_(None),
        )
        .limit(limit)
    ).scalars()
    for share in list(links):
        if not _mark(Share, share.id, "expiry_noticed"):
            continue
        expired.append(("link.expired", f"link {share.id} of user {share.owner_id}"))
        if share.downloads == 0:
            emit(
                share.owner_id,
                LINK_EXPIRED_UNUSED,
                {"link": {"id": share.id, "expires_at": share.expires_at.isoformat()}},
            )
            told += 1
    received = (
        db.select(StoredFile.id)
        .where(StoredFile.request_id == UploadRequest.id)
        .exists()
    )
    requests = db.session.execute(
        db.select(UploadRequest, received)
        .where(
            UploadRequest.expires_at <= now,
            UploadRequest.expiry_noticed.is_(False),
            UploadRequest.closed_at.is_(None),
        )
        .limit(limit)
    ).all()
    for upload_request, got_files in requests:
        if not _mark(UploadRequest, upload_request.id, "expiry_noticed"):
            continue
        expired.append(
            (
                "request.expired",
                f"request {upload_request.id} of user {upload_request.owner_id}",
            )
        )
        if not got_files:
            emit(
                upload_request.owner_id,
                REQUEST_EXPIRED_UNUSED,
                {"request": _request(upload_request)},
            )
            told += 1
    return told, expired


def _lease(delivery_id: int) -> bool:
    """Hold a due delivery for this instance: whether it got it."""

    @retry_on_conflict
    def take() -> bool:
        now = utcnow()
        return (
            rowcount(
                db.session.execute(
                    db.update(Delivery)
                    .where(
                        Delivery.id == delivery_id,
                        Delivery.status == PENDING,
                        Delivery.next_attempt_at <= now,
                        Delivery.lease_until.is_(None) | (Delivery.lease_until < now),
                    )
                    .values(lease_until=now + timedelta(seconds=LEASE_SECONDS))
                )
            )
            == 1
        )

    return take()


def deliver_due(limit: int = BATCH) -> int:
    """Send the deliveries that are due, as many as ``limit``; how many this
    instance attempted."""
    now = utcnow()
    due = list(
        db.session.execute(
            db.select(Delivery.id)
            .outerjoin(Webhook, Webhook.id == Delivery.webhook_id)
            .where(
                Delivery.status == PENDING,
                Delivery.next_attempt_at <= now,
                Delivery.lease_until.is_(None) | (Delivery.lease_until < now),
                Delivery.webhook_id.is_(None) | Webhook.enabled.is_(True),
            )
            .order_by(Delivery.next_attempt_at)
            .limit(limit)
        ).scalars()
    )
    db.session.rollback()
    leased = [delivery_id for delivery_id in due if _lease(delivery_id)]
    if not leased:
        return 0  # the usual pass: no threads started for nothing
    # A few at once: one slow receiver holds up one sender, not every
    # account's messages (each attempt ends within twice its timeout).
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with ThreadPoolExecutor(SENDERS, thread_name_prefix="notify") as pool:
        list(pool.map(lambda delivery_id: _attempt_in(app, delivery_id), leased))
    return len(leased)


def _attempt_in(app: Flask, delivery_id: int) -> None:
    """_attempt in an app context of its own (a sending thread)."""
    with app.app_context():
        try:
            _attempt(delivery_id)
        finally:
            db.session.remove()


def _attempt(delivery_id: int) -> None:
    """One attempt at a leased delivery, and what came of it (committed)."""
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        db.session.rollback()
        return
    webhook = (
        db.session.get(Webhook, delivery.webhook_id)
        if delivery.webhook_id is not None
        else None
    )
    body, message_id, to = delivery.payload, delivery.message_id, delivery.email_to
    url, secret, unopened = "", "", None
    if webhook is not None:
        url = webhook.url
        try:
            secret = webhook_secret(webhook)
        except sealing.DamagedData as damage:
            unopened = f"its signing secret does not open here: {damage}"
            current_app.logger.error("Webhook %s: %s", webhook.id, unopened)
    db.session.rollback()  # no transaction is held while the receiver answers
    now = utcnow()
    refused = False
    status: int | None
    error: str | None
    if unopened is not None:
        status, error = None, unopened
        ok = False
    elif webhook is not None:
        try:
            status, error = _post(url, secret, message_id, body, now)
        except webhook_http.Refused as refusal:
            status, error, refused = None, str(refusal), True
        ok = status is not None and 200 <= status < 300
    elif to is not None:
        status, error = None, _mail(to, json.loads(body))
        ok = error is None
    else:  # its webhook was deleted meanwhile: nothing to send it to
        return
    _record(delivery_id, now, ok, status, error, final=refused)


def _post(
    url: str, secret: str, message_id: str, body: str, now: datetime
) -> tuple[int | None, str | None]:
    """A webhook message, signed: the receiver's status, or why none."""
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Signer(secret).sign(message_id, now, body),
    }
    try:
        status = webhook_http.post(
            url,
            body.encode(),
            headers,
            current_app.config["WEBHOOK_ALLOW_HOSTS"],
            timeout=current_app.config["WEBHOOK_TIMEOUT_SECONDS"],
        )
    except webhook_http.Refused:
        raise  # never going to change: not tried again
    except Exception as failure:  # any network failure is one failed attempt
        return None, f"{type(failure).__name__}: {failure}"
    return status, None if 200 <= status < 300 else f"answered {status}"


def _mail(to: str, event: dict[str, Any]) -> str | None:
    """An event told by e-mail: None once the mail server took it, else why
    not."""
    config = current_app.config
    if not config["SMTP_URL"]:
        return "this server sends no e-mail (SMTP_URL is not set)"
    subject = SUBJECTS.get(event["type"], "Lockbox")
    context = {"event": event, "data": event["data"], "subject": subject}
    try:
        mail.send(
            config["SMTP_URL"],
            config["MAIL_FROM"],
            to,
            subject,
            render_template("email/event.txt", **context),
            render_template("email/event.html", **context),
            timeout=config["WEBHOOK_TIMEOUT_SECONDS"],
        )
    except Exception as failure:  # a refusal or a network failure: try again
        return f"{type(failure).__name__}: {failure}"
    return None


@retry_on_conflict
def _record(
    delivery_id: int,
    at: datetime,
    ok: bool,
    status: int | None,
    error: str | None,
    final: bool = False,
) -> None:
    """Keep an attempt's outcome: delivered, or the next try, or failed
    (at once when ``final``: an address Lockbox will not send to)."""
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        return
    delivery.attempts += 1
    delivery.last_attempt_at = at
    delivery.last_status_code = status
    delivery.lease_until = None
    if ok:
        delivery.status, delivery.last_error = DELIVERED, None
        return
    delivery.last_error = (error or "it failed")[:255]
    if final or delivery.attempts >= ATTEMPTS:
        delivery.status = FAILED
    else:
        wait = RETRY_AFTER[delivery.attempts - 1]
        delivery.next_attempt_at = utcnow() + timedelta(seconds=wait)


@retry_on_conflict
def send_again(delivery: Delivery) -> None:
    """Queue a delivery again, now, with the same webhook-id (committed)."""
    delivery.status = PENDING
    delivery.next_attempt_at = utcnow()
    delivery.lease_until = None
    if delivery.attempts >= ATTEMPTS:
        delivery.attempts = ATTEMPTS - 1


def run_once() -> int:
    """One pass of the sender: expiries noticed, due deliveries sent."""
    notice_expired()
    return deliver_due()


def _sender(app: Flask, stop: threading.Event) -> None:
    """The background sender of one process: a pass every poll interval,
    each failure a warning line (the next pass tries again)."""
    every = app.config["NOTIFY_POLL_SECONDS"]
    while not stop.wait(every):
        with app.app_context():
            try:
                run_once()
            except Exception as error:  # never let the thread die
                app.logger.warning("Notifications: a pass failed: %s", error)
            finally:
                db.session.remove()


def start_in_background(app: Flask) -> Callable[[], None]:
    """Start this process's sender thread (once per process); a function
    that stops it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=_sender, args=(app, stop), name="notifications", daemon=True
    )
    thread.start()
    return stop.set


def init_app(app: Flask) -> None:
    """Start the sender in each process that serves requests, with its first
    request (a command line never starts one; tests drive it themselves)."""
    if not app.config["NOTIFY_IN_BACKGROUND"] or app.testing:
        return
    started: set[int] = set()
    lock = threading.Lock()

    @app.before_request
    def start_sender() -> None:
        if os.getpid() in started:
            return
        with lock:
            if os.getpid() not in started:
                started.add(os.getpid())
                start_in_background(app)


def run_forever(poll_seconds: float) -> None:
    """``flask notify run``: passes until interrupted."""
    while True:
        try:
            run_once()
        finally:
            db.session.remove()
        time.sleep(poll_seconds)
