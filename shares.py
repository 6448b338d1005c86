"""Share links, the views: the owner makes a link (``POST /files/<id>/shares``),
lists a file's links and revokes one (``DELETE /shares/<id>``); anyone with
the link opens ``/s/<link>``, a page with the file's name, size and
description and a Download button, and ``/s/<link>/download`` gives the bytes
like the owner's own download (Range, conditional requests, HEAD).

What a link is and what its holder may bring (its password, the page's
unlock cookie, a download's claim) is share_links.py's; caller.py reads them.
A password, when set, is asked for by the page (a form; the link is then
unlocked for an hour by a cookie scoped to it) and by the download as HTTP
Basic credentials with any username (``curl -u :password``). Password
attempts, right or wrong, are limited per link and per address, like
sign-ins, and counted when they start.

What counts against ``max_downloads``: a download takes its count when its
first byte is about to go out (whole file or a range, claimed atomically, so
that of two last downloads at once exactly one is sent) and never gives it
back, however little of the file it sent. The answer hands the client a
claim, as a cookie scoped to the link (its page and its download) and, for
clients that keep no cookies, in a ``Content-Location`` URL (``?claim=...``). For
SHARE_RESUME_SECONDS the client holding the claim fetches any ranges of the
file (resumes, the whole file again) without counting and without the
password, even once the link is used up; anyone else needs a count of their
own. HEAD and 304 answers never count. An expired, revoked or used-up link is
410 for every method and every conditional header, but for the holder of a
claim to a used-up one.
"""

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from marshmallow import Schema
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response as BaseResponse

import audit
import caller
import policies
import rate_limits
import storage
from access_log import DOWNLOAD, PREVIEW, RESUME, SHOWN, events_of, record_download
from authentication import check_for_token
from downloads import file_response, zip_response
from errors import ApiError, no_content, wants_html
from models import MAX_INT_ID, Share, StoredFile, User, db, utcnow
from page_sessions import set_private_cookie
from previews import asked_inline, preview_kind
from request_data import load_or_400, request_body
from schemas import (
    MAX_FILES_PER_LINK,
    access_event_list_schema,
    several_files_query_schema,
    several_files_request_schema,
    share_list_schema,
    share_request_schema,
    share_schema,
    shared_file_schema,
    shared_files_schema,
)
from share_links import (
    CLAIM_COOKIE,
    GONE,
    UNLOCK_COOKIE,
    UNLOCK_SECONDS,
    DownloadCounter,
    add_files,
    files_of,
    link_url,
    new_share,
    revoke,
    shown_status,
    status_of,
    target_of,
    unlock_cookie_value,
)

bp = Blueprint("shares", __name__)

# Links a file may have at once: a bound on what one account can pile up.
MAX_SHARES_PER_FILE = 100
FILE_ID = "<int:file_id>"
SHARE_ID = "<int:share_id>"
SHARE_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Share"'}
PASSWORD_NEEDED = "This link needs its password"
WRONG_PASSWORD = "Wrong password for this link"


def _describe(
    share: Share, owner: User, in_force: policies.Policies | None = None
) -> dict[str, Any]:
    """A share as its owner sees it (ShareSchema); ``in_force``: the
    policies, read once for a whole list."""
    files = files_of(share)
    return {
        "id": share.id,
        "file_id": share.file_id,
        "file_ids": [stored_file.id for _, stored_file in files],
        "url": link_url(share),
        "status": shown_status(share, owner, len(files), in_force),
        "created_at": share.created_at,
        "expires_at": share.expires_at,
        "max_downloads": share.max_downloads,
        "downloads": share.downloads,
        "last_download_at": share.last_download_at,
        "has_password": share.password_hash is not None,
    }


def _shares_of(file_id: int) -> list[Share]:
    """A file's links, newest first."""
    return list(
        db.session.execute(
            db.select(Share)
            .filter_by(file_id=file_id)
            .order_by(Share.created_at.desc(), Share.id.desc())
        ).scalars()
    )


def _share_request(schema: Schema = share_request_schema) -> dict[str, Any]:
    """The new link's settings, from JSON or the page's form (where an empty
    field means "not set", and ``file_ids`` may come many times)."""
    body = request_body()
    if not request.is_json:
        body = {name: value for name, value in body.items() if value.strip()}
        if "file_ids" in request.form:
            body["file_ids"] = request.form.getlist("file_ids")
    settings = load_or_400(schema, body)
    config = current_app.config
    expires_in = settings.get("expires_in", config["SHARE_DEFAULT_SECONDS"])
    if expires_in > config["SHARE_MAX_SECONDS"]:
        raise ApiError(
            400, f"expires_in must be at most {config['SHARE_MAX_SECONDS']} seconds"
        )
    settings["expires_in"] = expires_in
    policies.check_new_link(
        bool((settings.get("password") or "").strip()),
        utcnow() + timedelta(seconds=expires_in),
    )
    return settings


def _access_rows(links: list[Share]) -> list[tuple[str, Any]]:
    """The newest rows of these links' access logs, for a page: each says
    which link it came through, by the link's number (oldest first is 1)."""
    return sorted(
        (
            (f"link {number}", event)
            for number, share in enumerate(reversed(links), start=1)
            for event in events_of(share_id=share.id)
        ),
        key=lambda pair: pair[1].id,
        reverse=True,
    )[:SHOWN]


# A link opens the file to whoever holds it: making one is reading the file,
# and a list of links is a list of ways to read them, which must not outlive
# a token that could only read.
MAKE_OR_LIST_LINKS = ("files:read", "shares:write")


@bp.post(f"/files/{FILE_ID}/shares")
@check_for_token(scope=MAKE_OR_LIST_LINKS)
def create_share(file_id: int) -> ResponseReturnValue:
    """Make a share link to one of your files.
    ---
    post:
      parameters: [FileId]
      requestBody:
        required: false
        content:
          application/json:
            schema: ShareRequestSchema
          application/x-www-form-urlencoded:
            schema: ShareRequestSchema
      responses:
        201:
          description: The link; Location names its owner's view of it
          content:
            application/json:
              schema: ShareSchema
        303:
          description: A browser's form post, sent back to the file's links
        403: Forbidden
        404: NotFound
        409:
          description: The file has as many links as it may
          content:
            application/json:
              schema: ErrorSchema
    """
    # The account's row first, as every change to its files takes it (the
    # link's row points at both): no deadlock with a deletion or an upload
    # finishing, and two links made at once are counted one after the other.
    storage.lock_owners(g.user.id)
    stored_file = storage.finished_file_of(g.user, file_id)
    settings = _share_request()
    count = db.session.execute(
        db.select(db.func.count()).select_from(Share).filter_by(file_id=file_id)
    ).scalar_one()
    if count >= MAX_SHARES_PER_FILE:
        raise ApiError(
            409, f"A file may have {MAX_SHARES_PER_FILE} links; delete some first"
        )
    share = new_share(
        [stored_file],
        g.user,
        settings["expires_in"],
        settings.get("password"),
        settings.get("max_downloads"),
    )
    return _saved(share, [], "shares.list_shares", file_id=file_id)


def _saved(
    share: Share, files: list[StoredFile], page: str, **page_args: Any
) -> ResponseReturnValue:
    """Keep a new link (and the files of a link to several): 201 with it, or
    for a browser's form back to ``page`` with the link in a message; 404 if
    a file was deleted while the link was being made."""
    db.session.add(share)
    if files:
        db.session.flush()
        add_files(share, files)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(404, "File not found") from None
    audit.record(
        "link.created",
        target_of(share),
        "with a password" if share.password_hash else "without a password",
    )
    if wants_html():
        flash(f"Link created: {link_url(share)}", "success")
        return redirect(url_for(page, **page_args), 303)
    body = share_schema.dump(_describe(share, g.user))
    return jsonify(body), 201, {"Location": url_for(page, **page_args, token=None)}


@bp.get(f"/files/{FILE_ID}/shares")
@check_for_token(scope=MAKE_OR_LIST_LINKS)
def list_shares(file_id: int) -> ResponseReturnValue:
    """A file's share links, newest first (a page for browsers).
    ---
    get:
      parameters: [FileId]
      responses:
        200:
          description: The links
          content:
            application/json:
              schema: ShareListSchema
            text/html: {}
        403: Forbidden
        404: NotFound
    """
    stored_file = storage.finished_file_of(g.user, file_id)
    links = _shares_of(file_id)
    in_force = policies.current()
    shares = [_describe(share, g.user, in_force) for share in links]
    if wants_html():
        return render_template(
            "shares.html",
            file=stored_file,
            shares=shares,
            events=_access_rows(links),
            link_rules=in_force,
        )
    return jsonify(share_list_schema.dump({"items": shares}))


# Links to several files an account may have at once.
MAX_SEVERAL_LINKS = 1000


def _links_to_several() -> list[Share]:
    """The caller's links to several files, newest first."""
    return list(
        db.session.execute(
            db.select(Share)
            .where(Share.owner_id == g.user.id, Share.file_id.is_(None))
            .order_by(Share.created_at.desc(), Share.id.desc())
        ).scalars()
    )


def _own_files(file_ids: list[int]) -> list[StoredFile]:
    """The caller's finished files with these ids, in this order, each once;
    404 if any is not one of them (whether it exists or is someone else's:
    the same answer)."""
    wanted = list(dict.fromkeys(i for i in file_ids if 1 <= i <= MAX_INT_ID))
    found = {
        stored_file.id: stored_file
        for stored_file in db.session.execute(
            db.select(StoredFile).where(
                StoredFile.id.in_(wanted),
                StoredFile.owner_id == g.user.id,
                StoredFile.kept(utcnow()),
            )
        ).scalars()
    }
    if len(found) != len(wanted) or len(wanted) != len(set(file_ids)):
        raise ApiError(404, "File not found")
    return [found[file_id] for file_id in wanted]


@bp.post("/shares")
@check_for_token(scope=MAKE_OR_LIST_LINKS)
def create_link_to_several() -> ResponseReturnValue:
    """Make one link to several of your files: its page lists them, each
    downloads alone, and all download as one zip.
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: SeveralFilesRequestSchema
          application/x-www-form-urlencoded:
            schema: SeveralFilesRequestSchema
      responses:
        201:
          description: The link
          content:
            application/json:
              schema: ShareSchema
        303:
          description: A browser's form post, sent back to the links to several files
        400: BadRequest
        403: Forbidden
        404: NotFound
        409:
          description: The account has as many links to several files as it may
          content:
            application/json:
              schema: ErrorSchema
    """
    settings = _share_request(several_files_request_schema)
    storage.lock_owners(g.user.id)  # as for a link to one file
    files = _own_files(settings["file_ids"])
    count = db.session.execute(
        db.select(db.func.count())
        .select_from(Share)
        .where(Share.owner_id == g.user.id, Share.file_id.is_(None))
    ).scalar_one()
    if count >= MAX_SEVERAL_LINKS:
        raise ApiError(
            409,
            f"An account may have {MAX_SEVERAL_LINKS} links to several files; "
            "delete some first",
        )
    share = new_share(
        files,
        g.user,
        settings["expires_in"],
        settings.get("password"),
        settings.get("max_downloads"),
        several=True,
    )
    return _saved(share, files, "shares.several_files")


@bp.get("/shares")
@check_for_token(scope=MAKE_OR_LIST_LINKS)
def several_files() -> ResponseReturnValue:
    """Your links to several files, newest first (a page for browsers, which
    also makes one of the files picked on the file list: ``?file_ids=``).
    ---
    get:
      parameters:
      - in: query
        schema: SeveralFilesQuerySchema
      responses:
        200:
          description: The links
          content:
            application/json:
              schema: ShareListSchema
            text/html: {}
        403: Forbidden
    """
    query = {"file_ids": request.args.getlist("file_ids")}
    # In the order they were picked, each once.
    picked = list(
        dict.fromkeys(load_or_400(several_files_query_schema, query)["file_ids"])
    )
    links = _links_to_several()
    in_force = policies.current()
    shares = [_describe(share, g.user, in_force) for share in links]
    if not wants_html():
        return jsonify(share_list_schema.dump({"items": shares}))
    chosen = sorted(
        db.session.execute(
            db.select(StoredFile).where(
                StoredFile.id.in_([i for i in picked if 1 <= i <= MAX_INT_ID]),
                StoredFile.owner_id == g.user.id,
                StoredFile.kept(utcnow()),
            )
        ).scalars(),
        key=lambda stored_file: picked.index(stored_file.id),
    )
    names = {
        file_id: name
        for file_id, name in db.session.execute(
            db.select(StoredFile.id, StoredFile.filename).where(
                StoredFile.id.in_({i for share in shares for i in share["file_ids"]})
            )
        )
    }
    return render_template(
        "several.html",
        chosen=chosen,
        shares=shares,
        names=names,
        events=_access_rows(links),
        max_files=MAX_FILES_PER_LINK,
        link_rules=in_force,
    )


@bp.get(f"/shares/{SHARE_ID}/accesses")
@check_for_token(scope=MAKE_OR_LIST_LINKS)
def share_accesses(share_id: int) -> ResponseReturnValue:
    """Who fetched what through a link: its access log, newest first.
    ---
    get:
      parameters: [ShareId]
      responses:
        200:
          description: The newest 200 rows
          content:
            application/json:
              schema: AccessEventListSchema
        403: Forbidden
        404: ShareNotFound
    """
    share = _owned_share_or_404(share_id)
    return jsonify(
        access_event_list_schema.dump({"items": events_of(share_id=share.id)})
    )


def _owned_share_or_404(share_id: int) -> Share:
    """The caller's share with this id; 404 for anyone else's or none."""
    share = None
    if 1 <= share_id <= MAX_INT_ID:
        share = db.session.execute(
            db.select(Share).filter_by(id=share_id, owner_id=g.user.id)
        ).scalar_one_or_none()
    if share is None:
        raise ApiError(404, "Share not found")
    return share


@bp.delete(f"/shares/{SHARE_ID}")
@check_for_token(scope="shares:write")
def revoke_share(share_id: int) -> Response:
    """Revoke a share link: it answers 410 from now on.
    ---
    delete:
      parameters: [ShareId]
      responses:
        204:
          description: Revoked (or revoked already)
        403: Forbidden
        404: ShareNotFound
    """
    revoke(_owned_share_or_404(share_id))
    return no_content()


@bp.post(f"/shares/{SHARE_ID}/revoke")
@check_for_token(scope="shares:write")
def revoke_share_form(share_id: int) -> BaseResponse:
    """Revoke a share link from the page (HTML).
    ---
    post:
      parameters: [ShareId]
      responses:
        303:
          description: Revoked; back to the file's links
        403: Forbidden
        404: ShareNotFound
    """
    share = _owned_share_or_404(share_id)
    revoke(share)
    flash("Link revoked", "success")
    if share.file_id is None:
        return redirect(url_for("shares.several_files"), 303)
    return redirect(url_for("shares.list_shares", file_id=share.file_id), 303)


# The public side: the link itself.


def _link_key() -> str:
    """The per-link limit's key: the link's public id (or the link as given)."""
    link = (request.view_args or {}).get("link", "")
    return "share:" + link.partition(".")[0][:32]


# Every password check is counted when it starts, right or wrong (rate_limits.py).
limit_per_link = rate_limits.per_link(_link_key, caller.link_checks_no_password)
limit_per_address = rate_limits.per_address(caller.link_checks_no_password)


@bp.after_request
def never_stored(response: Response) -> Response:
    """A link is a secret in the URL: no cache keeps its answers, no search
    engine lists it."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


@bp.route("/s/<link>", methods=["GET", "POST"])
@limit_per_link
@limit_per_address
@caller.link
def share_page(link: str) -> ResponseReturnValue:
    """A shared file: a page with its name, size, description and a Download
    button, or its details as JSON; the password first when it has one.
    ---
    get:
      security:
      - {}
      - sharePassword: []
      parameters: [Link]
      responses:
        200:
          description: The page, or the details of the file (or files)
          content:
            text/html: {}
            application/json:
              schema:
                oneOf:
                - SharedFileSchema
                - SharedFilesSchema
        401:
          description: The link's password is needed, or was wrong
          content:
            application/json:
              schema: ErrorSchema
            text/html: {}
        404: LinkNotFound
        410: LinkGone
    post:
      security: []
      parameters: [Link]
      requestBody:
        required: true
        content:
          application/x-www-form-urlencoded:
            schema:
              type: object
              properties:
                password: {type: string}
      responses:
        303:
          description: The password was right; back to the page, unlocked
        401:
          description: Wrong password
          content:
            application/json:
              schema: ErrorSchema
            text/html: {}
        404: LinkNotFound
        410: LinkGone
    """
    access = g.caller.record
    share, owner = access.share, access.owner
    if status_of(share, owner) == "used_up" and not access.claimed:
        # The visitor whose download (or preview) used it up still sees it
        # while their claim lasts.
        raise ApiError(410, GONE["used_up"])
    if request.method == "POST" and access.unlocked:
        response = redirect(url_for("shares.share_page", link=link), 303)
        _set_unlock_cookie(response, share, link)
        return response
    if request.method != "POST" and access.unlocked:
        if share.file_id is None:
            return _several_details(access)
        return _details(share, access.files[0][1], owner, link)
    error = WRONG_PASSWORD if access.wrong_password else None
    if not wants_html():
        raise ApiError(401, error or PASSWORD_NEEDED, SHARE_CHALLENGE)
    page = render_template("share.html", locked=True, link=link, error=error)
    return page, 401


def _details(
    share: Share, stored_file: StoredFile, owner: User, link: str
) -> str | Response:
    """The open link: the page, or the same details as JSON."""
    details = {
        "filename": stored_file.filename,
        "size": stored_file.size,
        "content_type": stored_file.content_type,
        "description": stored_file.description,
        "sha256": stored_file.sha256,
        "owner": owner.username,
        "expires_at": share.expires_at,
        "downloads_left": None
        if share.max_downloads is None
        else share.max_downloads - share.downloads,
        "download_url": url_for("shares.share_download", link=link, _external=True),
    }
    if wants_html():
        kind = preview_kind(stored_file)
        # A link with a download limit shows its file only when asked: the
        # preview takes the visitor's download (and its claim, so that the
        # download after it is the same one).
        asked = request.args.get("preview") == "1" or g.caller.record.claimed
        shown = kind is not None and (share.max_downloads is None or asked)
        return render_template(
            "share.html",
            locked=False,
            link=link,
            kind=kind if shown else None,
            can_preview=kind is not None,
            src=url_for("shares.share_download", link=link, inline=1),
            **details,
        )
    return jsonify(shared_file_schema.dump(details))


def _several_details(access: caller.LinkAccess) -> str | Response:
    """An open link to several files: the page (with one file shown when
    ``?file=<position>`` asks), or the same details as JSON."""
    share, link = access.share, access.link
    files = [
        {
            "position": position,
            "filename": stored_file.filename,
            "size": stored_file.size,
            "content_type": stored_file.content_type,
            "description": stored_file.description,
            "sha256": stored_file.sha256,
            "download_url": url_for(
                "shares.shared_file", link=link, position=position, _external=True
            ),
            "kind": preview_kind(stored_file),
        }
        for position, stored_file in access.files
    ]
    details = {
        "owner": access.owner.username,
        "expires_at": share.expires_at,
        "downloads_left": None
        if share.max_downloads is None
        else share.max_downloads - share.downloads,
        "download_url": url_for("shares.share_download", link=link, _external=True),
        "files": files,
    }
    if not wants_html():
        return jsonify(shared_files_schema.dump(details))
    shown = next(
        (
            item
            for item in files
            if str(item["position"]) == request.args.get("file") and item["kind"]
        ),
        None,
    )
    return render_template(
        "share_several.html",
        link=link,
        shown=shown,
        total=sum(item["size"] for item in files),
        **details,
    )


def _set_unlock_cookie(response: BaseResponse, share: Share, link: str) -> None:
    """Remember, for this link only, that its password was given."""
    set_private_cookie(
        response,
        UNLOCK_COOKIE,
        unlock_cookie_value(share),
        url_for("shares.share_page", link=link),
        UNLOCK_SECONDS,
        samesite="Strict",
    )


@bp.get("/s/<link>/download")
@limit_per_link
@limit_per_address
@caller.link
def share_download(link: str) -> Response:
    """A shared file's bytes; Range, If-Range and If-None-Match honoured.
    ---
    get:
      security:
      - {}
      - sharePassword: []
      parameters:
      - Link
      - Inline
      - Claim
      responses:
        200:
          description: The whole file, or, for a link to several files, all
            of them as one zip (its length known, no Range). Without a claim
            it takes a count, and the answer hands out a claim (Set-Cookie
            and Content-Location) that covers the zip and every file
          content:
            "*/*":
              schema:
                type: string
            application/zip:
              schema:
                type: string
                format: binary
        206:
          description: One byte range; counted like a whole file without a claim
        304:
          description: Not modified
        401: LinkLocked
        404: LinkNotFound
        410: LinkGone
        416: RangeNotSatisfiable
    """
    access = g.caller.record
    if access.share.file_id is None:
        files = [stored_file for _, stored_file in access.files]
        what = f"all {len(files)} files as a zip"
        return _send(access, what, lambda transfer: _zip_of(files, transfer))
    return _send_file(access, access.files[0][1])


@bp.get("/s/<link>/files/<int:position>")
@limit_per_link
@limit_per_address
@caller.link
def shared_file(link: str, position: int) -> Response:
    """One file of a link, alone (a link to one file has it at position 1);
    like the link's download, and counted with it: one claim covers the zip
    and every file of the link.
    ---
    get:
      security:
      - {}
      - sharePassword: []
      parameters:
      - Link
      - name: position
        in: path
        required: true
        description: The file's place in the link, from 1
        schema: {type: integer, minimum: 1}
      - Inline
      - Claim
      responses:
        200:
          description: The whole file; counted as for the link's download
          content:
            "*/*":
              schema:
                type: string
        206:
          description: One byte range
        304:
          description: Not modified
        401: LinkLocked
        404: LinkNotFound
        410: LinkGone
        416: RangeNotSatisfiable
    """
    access = g.caller.record
    found = [item for place, item in access.files if place == position]
    if not found:
        raise ApiError(404, "This link has no such file")
    return _send_file(access, found[0])


def _zip_of(
    files: list[StoredFile],
    transfer: Callable[[Iterator[bytes]], Iterator[bytes]] | None,
) -> Response:
    """A link's files as one zip, named for the day it was made."""
    return zip_response(files, f"lockbox-{utcnow():%Y-%m-%d}.zip", transfer)


def _send_file(access: caller.LinkAccess, stored_file: StoredFile) -> Response:
    """One file of a link: a download, or the page's preview when asked."""
    inline_as = asked_inline(stored_file)
    return _send(
        access,
        stored_file.filename,
        lambda transfer: file_response(
            stored_file, transfer=transfer, inline_as=inline_as
        ),
        PREVIEW if inline_as else DOWNLOAD,
    )


def _send(
    access: caller.LinkAccess,
    what: str,
    respond: Callable[[DownloadCounter | None], Response],
    action: str = DOWNLOAD,
) -> Response:
    """A link's bytes, with its rules: the holder of a claim resumes without
    counting; anyone else needs the link unlocked and a count left, which
    the body takes as it starts (and then hands out a claim)."""
    share, owner = access.share, access.owner
    if access.claimed:
        response = respond(None)
        logged = action if action == PREVIEW else RESUME
        return record_download(response, share.id, logged, what)
    if status_of(share, owner) == "used_up":
        raise ApiError(410, GONE["used_up"])
    if not access.unlocked:
        message = WRONG_PASSWORD if access.wrong_password else PASSWORD_NEEDED
        raise ApiError(401, message, SHARE_CHALLENGE)
    counter = DownloadCounter(share, what)
    response = respond(counter)
    if counter.claim is not None:
        _hand_over_claim(response, counter.claim, access.link)
    return record_download(response, share.id, action, what)


def _hand_over_claim(response: BaseResponse, claim: str, link: str) -> None:
    """Give the client that took a count its claim: a cookie for browsers
    (sent to the link's page too, which then shows the file to its holder),
    and the URL to resume from for clients without cookies (curl)."""
    set_private_cookie(
        response,
        CLAIM_COOKIE,
        claim,
        url_for("shares.share_page", link=link),
        current_app.config["SHARE_RESUME_SECONDS"],
    )
    # The address just fetched (the zip, or one file), with the claim.
    assert request.endpoint is not None
    response.headers["Content-Location"] = url_for(
        request.endpoint, **(request.view_args or {}), claim=claim
    )
