"""Upload requests: the views. The owner makes, lists, closes and deletes
them (JSON and a page); the guest who holds a link gets its page, with the
note, an upload form and resumable uploads (uploads.py creates them,
files.py takes the plain form). request_links.py owns the link itself."""

from typing import Any

from flask import (
    Blueprint,
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

import audit
import caller
import policies
import rate_limits
import request_links
from access_log import SHOWN, events_of
from authentication import check_for_token
from errors import ApiError, no_content, wants_html
from models import MAX_INT_ID, StoredFile, UploadRequest, User, db, utcnow
from page_sessions import set_private_cookie
from request_data import load_or_400, request_body
from request_links import (
    UNLOCK_COOKIE,
    UNLOCK_SECONDS,
    new_request,
    password_needed,
    received,
    request_url,
    unlock_cookie_value,
)
from schemas import (
    access_event_list_schema,
    file_request_create_schema,
    file_request_list_schema,
    file_request_schema,
    guest_request_schema,
)

bp = Blueprint("upload_requests", __name__)

# Password attempts on an upload request's link, per link and per address.
limit_request_passwords = rate_limits.link_passwords(
    caller.request_link_key, caller.request_checks_no_password
)

REQUEST_ID = "<int:request_id>"
# Requests an account may hold at once (closed ones included, until deleted).
MAX_REQUESTS = 100


def _settings() -> dict[str, Any]:
    """The new request's settings, from JSON or the page's form (where an
    empty field means "not set")."""
    body = request_body()
    if not request.is_json:
        body = {name: value for name, value in body.items() if value.strip()}
    settings = load_or_400(file_request_create_schema, body)
    config = current_app.config
    expires_in = settings.get("expires_in", config["SHARE_DEFAULT_SECONDS"])
    if expires_in > config["SHARE_MAX_SECONDS"]:
        raise ApiError(
            400, f"expires_in must be at most {config['SHARE_MAX_SECONDS']} seconds"
        )
    most = config["REQUEST_MAX_BYTES"]
    max_bytes = settings.get("max_bytes", most)
    if max_bytes > most:
        raise ApiError(400, f"max_bytes must be at most {most} (REQUEST_MAX_BYTES)")
    settings.update(expires_in=expires_in, max_bytes=max_bytes)
    return settings


def _described(
    upload_request: UploadRequest,
    owner: User,
    in_force: policies.Policies | None = None,
) -> dict[str, Any]:
    """A request as its owner sees it, with the files that arrived."""
    files = db.session.execute(
        db.select(StoredFile)
        .where(StoredFile.request_id == upload_request.id, StoredFile.kept(utcnow()))
        .order_by(StoredFile.id.desc())
    ).scalars()
    return {
        "id": upload_request.id,
        "url": request_url(upload_request),
        "title": upload_request.title,
        "note": upload_request.note,
        "status": request_links.shown_status(upload_request, owner, in_force),
        "created_at": upload_request.created_at,
        "expires_at": upload_request.expires_at,
        "has_password": upload_request.password_hash is not None,
        "max_files": upload_request.max_files,
        "max_bytes": upload_request.max_bytes,
        "allowed_types": upload_request.allowed_types,
        "files": list(files),
    }


def _own_request(request_id: int) -> UploadRequest:
    """The caller's request with this id; 404 for anyone else's or none."""
    found = None
    if 1 <= request_id <= MAX_INT_ID:
        found = db.session.get(UploadRequest, request_id)
    if found is None or found.owner_id != g.user.id:
        raise ApiError(404, "Upload request not found")
    return found


@bp.post("/requests")
@check_for_token(scope="files:write")
def create_request() -> ResponseReturnValue:
    """Ask someone for files: a link that lets them send files into your
    account, without an account of their own.
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: FileRequestCreateSchema
          application/x-www-form-urlencoded:
            schema: FileRequestCreateSchema
      responses:
        201:
          description: The request; its link is url
          content:
            application/json:
              schema: FileRequestSchema
        303:
          description: A browser's form post, sent back to the requests page
        409:
          description: The account holds as many requests as it may
          content:
            application/json:
              schema: ErrorSchema
    """
    settings = _settings()
    count = db.session.execute(
        db.select(db.func.count())
        .select_from(UploadRequest)
        .filter_by(owner_id=g.user.id)
    ).scalar_one()
    if count >= MAX_REQUESTS:
        raise ApiError(409, f"An account may hold {MAX_REQUESTS} requests; delete some")
    upload_request = new_request(
        g.user,
        settings["title"],
        settings.get("note", ""),
        settings["expires_in"],
        settings["max_bytes"],
        settings.get("password"),
        settings.get("max_files"),
        settings.get("allowed_types"),
    )
    db.session.add(upload_request)
    db.session.commit()
    audit.record("request.created", request_links.target_of(upload_request))
    body = file_request_schema.dump(_described(upload_request, g.user))
    if wants_html():
        flash(f"Request created: {body['url']}", "success")
        return redirect(url_for("upload_requests.list_requests"), 303)
    location = url_for("upload_requests.list_requests", token=None)
    return jsonify(body), 201, {"Location": location}


@bp.get("/requests")
@check_for_token(scope="files:read")
def list_requests() -> ResponseReturnValue:
    """Your upload requests, newest first, with what each received.
    ---
    get:
      responses:
        200:
          description: The requests (a page for browsers)
          content:
            application/json:
              schema: FileRequestListSchema
            text/html: {}
    """
    found = db.session.execute(
        db.select(UploadRequest)
        .filter_by(owner_id=g.user.id)
        .order_by(UploadRequest.id.desc())
    ).scalars()
    in_force = policies.current()  # once for the whole list
    items = [_described(each, g.user, in_force) for each in found]
    if wants_html():
        events = sorted(
            (
                (item["title"], event)
                for item in items
                for event in events_of(request_id=item["id"])
            ),
            key=lambda pair: pair[1].id,
            reverse=True,
        )[:SHOWN]
        return render_template("requests.html", requests=items, events=events)
    return jsonify(file_request_list_schema.dump({"items": items}))


@bp.get(f"/requests/{REQUEST_ID}/accesses")
@check_for_token(scope="files:read")
def request_accesses(request_id: int) -> ResponseReturnValue:
    """Who sent what through a request: its access log, newest first.
    ---
    get:
      parameters: [RequestId]
      responses:
        200:
          description: The newest 200 rows
          content:
            application/json:
              schema: AccessEventListSchema
        404: OwnRequestNotFound
    """
    upload_request = _own_request(request_id)
    events = events_of(request_id=upload_request.id)
    return jsonify(access_event_list_schema.dump({"items": events}))


@bp.post(f"/requests/{REQUEST_ID}/close")
@check_for_token(scope="files:write")
def close_request(request_id: int) -> ResponseReturnValue:
    """Close a request: its link takes nothing more (410); what arrived stays.
    ---
    post:
      parameters: [RequestId]
      responses:
        200:
          description: The request, closed
          content:
            application/json:
              schema: FileRequestSchema
        303:
          description: A browser, sent back to the requests page
        404: OwnRequestNotFound
    """
    upload_request = _own_request(request_id)
    request_links.close(upload_request)
    if wants_html():
        flash(f"Request {upload_request.title} closed", "success")
        return redirect(url_for("upload_requests.list_requests"), 303)
    return jsonify(file_request_schema.dump(_described(upload_request, g.user)))


@bp.delete(f"/requests/{REQUEST_ID}")
@check_for_token(scope="files:write")
def delete_request(request_id: int) -> ResponseReturnValue:
    """Delete a request; the files it received stay in your account.
    ---
    delete:
      parameters: [RequestId]
      responses:
        204:
          description: Deleted
        404: OwnRequestNotFound
    """
    upload_request = _own_request(request_id)
    target = request_links.target_of(upload_request)
    db.session.delete(upload_request)
    db.session.commit()
    audit.record("request.deleted", target)
    return no_content()


@bp.route("/r/<link>", methods=["GET", "POST"])
@limit_request_passwords
@caller.upload_request(password_form=True)
def guest_page(link: str) -> ResponseReturnValue:
    """An upload request, as whoever holds its link sees it: what its owner
    asks for and how much it still takes (a page with the upload form for
    browsers). A POST is the page's password form.
    ---
    get:
      security:
      - {}
      - requestPassword: []
      parameters: [RequestLink]
      responses:
        200:
          description: The request
          content:
            application/json:
              schema: GuestRequestSchema
            text/html: {}
        401:
          description: The request's password is needed, or was wrong
          content:
            application/json:
              schema: ErrorSchema
            text/html: {}
        404: RequestNotFound
        410: RequestGone
    post:
      security: []
      parameters: [RequestLink]
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
        404: RequestNotFound
        410: RequestGone
    """
    access = g.caller.record
    upload_request, owner = access.upload_request, access.owner
    if request.method == "POST" and access.unlocked:
        response = redirect(url_for("upload_requests.guest_page", link=link), 303)
        set_private_cookie(
            response,
            UNLOCK_COOKIE,
            unlock_cookie_value(upload_request),
            url_for("upload_requests.guest_page", link=link),
            UNLOCK_SECONDS,
        )
        return response
    if not access.unlocked:
        if not wants_html():
            raise password_needed(access.wrong_password)
        error = "Wrong password" if access.wrong_password else None
        page = render_template("request.html", locked=True, link=link, error=error)
        return page, 401
    files, taken = received(upload_request)
    cap = upload_request.max_files
    details = {
        "title": upload_request.title,
        "note": upload_request.note,
        "owner": owner.username,
        "expires_at": upload_request.expires_at,
        "files_left": None if cap is None else max(cap - files, 0),
        "bytes_left": max(upload_request.max_bytes - taken, 0),
        "allowed_types": upload_request.allowed_types,
        "upload_url": url_for(
            "uploads.create_request_upload", link=link, _external=True
        ),
    }
    if wants_html():
        return render_template("request.html", locked=False, link=link, **details)
    return jsonify(guest_request_schema.dump(details))
