"""Files: the views. The upload page and form upload, the listing, metadata,
downloads and deletion; bytes go through storage.py, the form is read by
multipart.py and downloads are answered by downloads.py."""

import functools
from dataclasses import dataclass, field
from datetime import timedelta
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
from sqlalchemy import Row, Select, bindparam, func
from werkzeug.exceptions import ClientDisconnected

import access_log
import caller
import policies
import rate_limits
import request_links
import storage
from authentication import check_for_token
from downloads import file_response
from errors import ApiError, no_content, wants_html
from models import StoredFile, db, retry_on_conflict, utcnow
from multipart import UploadReceiver
from previews import asked_inline, preview_kind
from quotas import account_usage
from request_data import load_or_400, request_body
from schemas import (
    LISTED_COLUMNS,
    file_change_schema,
    file_list_query_schema,
    file_page_schema,
    stored_file_schema,
    uploaded_schema,
)
from storage import EXPIRED_COUNT, delete_stored_files, kept_file_count

bp = Blueprint("files", __name__)

# Password attempts on an upload request's link, per link and per address.
limit_request_passwords = rate_limits.link_passwords(
    caller.request_link_key, caller.request_checks_no_password
)


# A page of the caller's finished files, in one statement. The page's ids
# come first, from the listing index alone when the files come newest first
# (it holds the id too), so rows skipped for an offset cost an index entry
# each, not a read of the file's row (deep pages, docs/benchmarks.md); then
# those rows are read. Each order, with or without a search, is built once
# and run with parameters: building a statement costs more than running it.
SORT_KEYS = {
    "date": StoredFile.created_at,
    # Names in one order on every database, whatever its collation.
    "name": func.lower(StoredFile.filename),
    "size": StoredFile.size,
}
DEFAULT_ORDER = {"date": "desc", "name": "asc", "size": "desc"}
# A search looks for its text anywhere in the name, in any case; %, _ and
# the escape character itself are matched as they are.
LIKE_ESCAPE = "/"
NAME_MATCHES = func.lower(StoredFile.filename).like(
    bindparam("pattern"), escape=LIKE_ESCAPE
)
OWNED = (
    StoredFile.owner_id == bindparam("owner_id"),
    StoredFile.kept(bindparam("now")),
)
MATCHING_COUNT = db.select(func.count()).where(*OWNED, NAME_MATCHES)


@functools.cache
def listing(sort: str, order: str, searching: bool) -> Select[Any]:
    """The statement of a page of files in this order, matching a search's
    ``pattern`` or not; it takes ``owner_id``, ``limit`` and ``offset``."""
    key, tie = SORT_KEYS[sort], StoredFile.id
    by = (key.desc(), tie.desc()) if order == "desc" else (key.asc(), tie.asc())
    ids = db.select(StoredFile.id).where(*OWNED)
    if searching:
        ids = ids.where(NAME_MATCHES)
    page_ids = (
        ids.order_by(*by)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery("page")
    )
    # Each row also carries how many of the account's files expired and wait
    # for `files gc` (one uncorrelated subquery, through the expiry index),
    # which the page's total leaves out.
    expired = EXPIRED_COUNT.scalar_subquery().label("expired")
    return (
        db.select(*LISTED_COLUMNS, expired)
        .join(page_ids, StoredFile.id == page_ids.c.id)
        .order_by(*by)
    )


def like_pattern(text: str) -> str:
    """A LIKE pattern that finds ``text`` anywhere, in any case, as it is."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return f"%{text.lower()}%"


@dataclass(frozen=True)
class FilePage:
    """One page of listed rows, and where it sits among the account's files
    (or among those a search found).

    Flask-SQLAlchemy's ``db.paginate`` pages ORM entities, one query for the
    items and one to count; a listing page is plain rows from one statement
    through the listing index, and its total is the account's kept count.
    """

    items: list[Row[Any]]
    page: int
    per_page: int
    total: int
    # The search, the order, and the query the page's links carry on.
    search: str = ""
    sort: str = "date"
    order: str = "desc"
    kept: dict[str, str] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        """How many pages the account's files fill."""
        return -(-self.total // self.per_page)

    @property
    def has_prev(self) -> bool:
        """Whether a page comes before this one."""
        return self.page > 1

    @property
    def has_next(self) -> bool:
        """Whether a page follows this one."""
        return self.page < self.pages

    @property
    def prev_num(self) -> int:
        """The number of the page before."""
        return self.page - 1

    @property
    def next_num(self) -> int:
        """The number of the page after."""
        return self.page + 1


def owned_files_page(query: dict[str, Any]) -> FilePage:
    """A page of the caller's finished files (no bytes loaded), as a listing's
    validated query asks for it (FileListQuerySchema).

    Without a search the total is the account's count of finished files,
    which came with the account when the request's token was checked:
    counting them on every page would read every file of the account
    (docs/benchmarks.md, the listing). A search counts what it found.
    """
    owner, page, per_page = g.user, query["page"], query["per_page"]
    sort = query["sort"]
    order = query["order"] or DEFAULT_ORDER[sort]
    search = query["q"]
    values: dict[str, Any] = {
        "owner_id": owner.id,
        "limit": per_page,
        "offset": (page - 1) * per_page,
        "now": utcnow(),
    }
    if search:
        values["pattern"] = like_pattern(search)
        total = db.session.execute(MATCHING_COUNT, values).scalar_one()
    rows = db.session.execute(listing(sort, order, bool(search)), values).all()
    if not search:
        # The account's kept count, less its expired files: the rows say how
        # many (an empty page has to ask).
        total = owner.file_count - rows[0].expired if rows else kept_file_count(owner)
    # What the page's own links carry on: the choices that are not defaults.
    chosen = {"q": search, "sort": sort if sort != "date" else None}
    if query["order"] and query["order"] != DEFAULT_ORDER[sort]:
        chosen["order"] = query["order"]
    kept = {name: value for name, value in chosen.items() if value}
    return FilePage(list(rows), page, per_page, total, search, sort, order, kept)


@bp.get("/")
@check_for_token(scope="files:read")
def index() -> ResponseReturnValue:
    """The upload page and the caller's files (HTML).
    ---
    get:
      parameters:
      - in: query
        schema: FileListQuerySchema
      responses:
        200:
          description: The page
          content:
            text/html: {}
    """
    query = load_or_400(file_list_query_schema, request.args.to_dict())
    page = owned_files_page(query)
    return render_template(
        "index.html",
        page=page,
        account=account_usage(g.user),
        lifetimes=policies.offered_lifetimes(),
        default_lifetime=policies.lifetime_words(policies.default_lifetime(g.user)),
    )


@bp.post("/upload")
@check_for_token(scope="files:write")
def upload() -> ResponseReturnValue:
    """Upload one file (multipart/form-data, the file in inputFile).
    ---
    post:
      parameters:
      - name: X-Content-SHA256
        in: header
        required: false
        schema:
          type: string
          pattern: "^[0-9a-fA-F]{64}$"
      requestBody:
        required: true
        content:
          multipart/form-data:
            schema: UploadRequestSchema
      responses:
        201:
          description: Stored; Location names its metadata
          content:
            application/json:
              schema: UploadedSchema
        303:
          description: A browser's form post, sent back to the page
        415:
          description: Not multipart/form-data
          content:
            application/json:
              schema: ErrorSchema
    """
    try:
        stored_file = UploadReceiver(g.user).receive()
    except ClientDisconnected:
        current_app.logger.info("Client disconnected during an upload; nothing kept")
        raise
    body = uploaded_schema.dump(stored_file)
    if wants_html():
        flash(body["message"], "success")
        return redirect(url_for("files.index"), 303)
    # A header, not a page: the token stays out of it.
    location = url_for("files.file_metadata", file_id=stored_file.id, token=None)
    return jsonify(body), 201, {"Location": location}


@bp.post("/r/<link>/upload")
@limit_request_passwords
@caller.upload_request()
def upload_to_request(link: str) -> ResponseReturnValue:
    """Send one file to an upload request, as its guest (multipart/form-data,
    the file in inputFile): the plain form of the request's page.
    ---
    post:
      security:
      - {}
      - requestPassword: []
      parameters: [RequestLink]
      requestBody:
        required: true
        content:
          multipart/form-data:
            schema: UploadRequestSchema
      responses:
        201:
          description: Received
          content:
            application/json:
              schema: ErrorSchema
        303:
          description: A browser's form post, sent back to the request's page
        401: RequestLocked
        415: RequestKind
        404: RequestNotFound
        410: RequestGone
        411:
          description: No Content-Length (a request's caps need the size first)
          content:
            application/json:
              schema: ErrorSchema
    """
    access = g.caller.record
    if not access.unlocked:
        raise request_links.password_needed(access.wrong_password)
    if request.content_length is None:
        raise ApiError(
            411, "Send Content-Length: an upload request needs the size first"
        )

    def start(filename: str, declared: str | None, reserve: int) -> StoredFile:
        @retry_on_conflict
        def begin() -> StoredFile:
            try:
                return request_links.begin_file(
                    access.upload_request, filename, declared, reserve
                )
            except ApiError:
                db.session.rollback()
                raise

        return begin()

    stored_file = UploadReceiver(access.owner, start).receive()
    access_log.record_upload(
        access.upload_request.id, stored_file.filename, stored_file.size, True
    )
    message = f"file {stored_file.filename} sent to {access.owner.username}"
    if wants_html():
        flash(message, "success")
        return redirect(url_for("upload_requests.guest_page", link=link), 303)
    return jsonify({"message": message}), 201


# Any number is taken by the URL rule and checked against MAX_INT_ID by the
# view: a rule that refused the number would answer 405, not 404, to methods
# other than GET.
FILE_ID = "<int:file_id>"


def owned_file_or_404(file_id: int) -> StoredFile:
    """The caller's finished file with this id; 404 for anyone else's or none."""
    return storage.finished_file_of(g.user, file_id)


@bp.get("/files")
@check_for_token(scope="files:read")
def list_files() -> ResponseReturnValue:
    """The caller's files, newest first, a page at a time.
    ---
    get:
      parameters:
      - in: query
        schema: FileListQuerySchema
      responses:
        200:
          description: A page of files
          content:
            application/json:
              schema: FilePageSchema
    """
    query = load_or_400(file_list_query_schema, request.args.to_dict())
    page = owned_files_page(query)
    return jsonify(file_page_schema.dump_page(page))


@bp.get(f"/files/{FILE_ID}")
@check_for_token(scope="files:read")
def file_metadata(file_id: int) -> ResponseReturnValue:
    """One file's metadata.
    ---
    get:
      parameters: [FileId]
      responses:
        200:
          description: The metadata
          content:
            application/json:
              schema: StoredFileSchema
        404: NotFound
    """
    return jsonify(stored_file_schema.dump(owned_file_or_404(file_id)))


@bp.patch(f"/files/{FILE_ID}")
@check_for_token(scope="files:write")
def change_file(file_id: int) -> ResponseReturnValue:
    """Change when a file expires: a time (null: keep it until deleted) or a
    lifetime from now, within the server's policy.
    ---
    patch:
      parameters: [FileId]
      requestBody:
        required: true
        content:
          application/json:
            schema: FileChangeSchema
      responses:
        200:
          description: The file, as it is now
          content:
            application/json:
              schema: StoredFileSchema
        404: NotFound
    """
    change = load_or_400(file_change_schema, request_body())
    return jsonify(stored_file_schema.dump(set_expiry(file_id, change)))


@bp.post(f"/files/{FILE_ID}/expiry")
@check_for_token(scope="files:write")
def change_expiry_form(file_id: int) -> ResponseReturnValue:
    """Change when a file expires, from its page: ``expires_in`` a lifetime
    from now, or "never" (HTML).
    ---
    post:
      parameters: [FileId]
      requestBody:
        required: true
        content:
          application/x-www-form-urlencoded:
            schema: FileChangeSchema
      responses:
        303:
          description: Changed; back to the file's page
        404: NotFound
    """
    change = load_or_400(file_change_schema, request.form.to_dict())
    stored_file = set_expiry(file_id, change)
    if stored_file.expires_at is None:
        flash(f"{stored_file.filename} is kept until you delete it", "success")
    else:
        when = stored_file.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        flash(f"{stored_file.filename} now expires on {when}", "success")
    return redirect(url_for("files.preview_file", file_id=file_id), 303)


@retry_on_conflict
def set_expiry(file_id: int, change: dict[str, Any]) -> StoredFile:
    """Give one of the caller's files the expiry ``change`` asks for
    (FileChangeSchema), within the policy (committed)."""
    stored_file = owned_file_or_404(file_id)
    now = utcnow()
    if "expires_in" in change:
        seconds = policies.lifetime_seconds(change["expires_in"])
        expires_at = None if seconds is None else now + timedelta(seconds=seconds)
    else:
        expires_at = change["expires_at"]
        if expires_at is not None and not (
            now < expires_at <= now + timedelta(seconds=policies.MAX_FILE_SECONDS)
        ):
            raise ApiError(
                400,
                "expires_at must be in the future, within 3650 days (to remove "
                "the file now, delete it)",
            )
    policies.check_file_expiry(stored_file.created_at, expires_at)
    stored_file.expires_at = expires_at
    return stored_file


@bp.delete(f"/files/{FILE_ID}")
@check_for_token(scope="files:write")
def delete_file(file_id: int) -> ResponseReturnValue:
    """Delete a file and all its chunks, in one transaction.
    ---
    delete:
      parameters: [FileId]
      responses:
        204:
          description: Deleted
        404: NotFound
    """
    delete_owned_file(file_id)
    return no_content()


@retry_on_conflict
def delete_owned_file(file_id: int) -> StoredFile:
    """Delete one of the caller's files with its chunks (committed); run again
    when, on a Galera cluster, a change to the same account through another
    node (an upload finishing, say) conflicted with it."""
    stored_file = owned_file_or_404(file_id)
    delete_stored_files(StoredFile.id == file_id)
    return stored_file


@bp.post(f"/files/{FILE_ID}/delete")
@check_for_token(scope="files:write")
def delete_file_form(file_id: int) -> ResponseReturnValue:
    """Delete from the page: asks on a page first unless confirm=yes (HTML).
    ---
    post:
      parameters: [FileId]
      responses:
        200:
          description: The page that asks to confirm
          content:
            text/html: {}
        303:
          description: Deleted; back to the page
        404: NotFound
    """
    if request.form.get("confirm") != "yes":
        stored_file = owned_file_or_404(file_id)
        return render_template("confirm_delete.html", file=stored_file)
    stored_file = delete_owned_file(file_id)
    flash(f"file {stored_file.filename} deleted", "success")
    return redirect(url_for("files.index"), 303)


@bp.get(f"/files/{FILE_ID}/download")
@check_for_token(scope="files:read")
def download_file(file_id: int) -> ResponseReturnValue:
    """The file's bytes; Range, If-Range and If-None-Match honoured.
    ---
    get:
      parameters:
      - FileId
      - Inline
      responses:
        200:
          description: The whole file, in its stored content type
          content:
            "*/*":
              schema:
                type: string
        206:
          description: One byte range
        304:
          description: Not modified
        404: NotFound
        416: RangeNotSatisfiable
    """
    stored_file = owned_file_or_404(file_id)
    return file_response(stored_file, inline_as=asked_inline(stored_file))


@bp.get("/files/<int:file_id>/preview")
@check_for_token(scope="files:read")
def preview_file(file_id: int) -> ResponseReturnValue:
    """A file's page: the file shown (an image, a film, a sound, a PDF or
    text), its details and its Download and Share buttons (HTML).
    ---
    get:
      parameters: [FileId]
      responses:
        200:
          description: The page
          content:
            text/html: {}
        404: NotFound
    """
    stored_file = owned_file_or_404(file_id)
    return render_template(
        "preview.html",
        file=stored_file,
        kind=preview_kind(stored_file),
        src=url_for("files.download_file", file_id=file_id, inline=1),
        lifetimes=policies.offered_lifetimes(),
    )
