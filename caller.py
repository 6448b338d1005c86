"""Who is asking: the one place that reads credentials from a request and
says who the caller is (``g.caller``, a :class:`Caller`).

Every route says which credential it takes with one of this module's
decorators, which resolves it before the view runs and marks the view
(``caller_rule``), so that a test can check every route of the app:

- ``account``: a signed-in session's JSON Web Token or a personal access
  token, as ``Authorization: Bearer`` or ``?token=`` (the tutorial's pages);
  with the scopes the route needs (authentication.check_for_token);
- ``password``: a username and password to sign in with, Basic credentials
  on ``GET /login`` and the body on ``POST /login``;
- ``refresh_token``: a refresh token, as Bearer, ``?token=`` or in the body;
- ``renewal``: a page session's renewal cookie (a refresh token), with the
  page's own ``?token=``, expired or not, to say whose page it is;
- ``link``: a share link in the path, with what its holder may bring: the
  link's password (Basic, or the page's form), the page's unlock cookie, a
  download's claim (its cookie or ``?claim=``);
- ``upload_key``: a resumable upload's key in the path, and optionally the
  owner's account token;
- ``upload_request``: an upload request's link in the path, with its
  password (Basic, the page's form, or the page's unlock cookie): it may
  send files into that one request, nothing else;
- ``invitation``: an invitation's secret in the path (invitations.py): it
  may set its account's password once, nothing else;
- ``metrics``: the metrics token, as Bearer;
- ``nobody``: no credential at all (liveness, the API description, the
  capabilities of the tus server).

Each kind of credential is checked by a module of its own (credentials.py
lists them); no other module reads ``Authorization``, the ``token`` query
argument or a credential cookie. ``g.user`` is always the caller's own
account, or None: an upload key opens its upload for whoever holds it, and
the upload's owner is the caller's record's ``owner`` (an UploadAccess).
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, ParamSpec, TypeVar
from urllib.parse import urlencode

from flask import g, has_request_context, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import Authorization

import invitations
import metrics_token
import oidc
import personal_tokens
import request_links
import session_tokens
import share_links
import two_factor
import upload_keys
from errors import ApiError
from models import (
    ADMIN,
    Invitation,
    ResumableUpload,
    Share,
    StoredFile,
    UploadRequest,
    User,
)
from passwords import canonical_username
from request_data import load_or_400, request_body
from schemas import ADMIN_SCOPE, refresh_body_schema

# The kinds of caller.
SESSION = "session"
ACCESS_TOKEN = "access_token"
PASSWORD = "password"
REFRESH_TOKEN = "refresh_token"
RENEWAL = "renewal"
LINK = "link"
UPLOAD_KEY = "upload_key"
UPLOAD_REQUEST = "upload_request"
INVITATION = "invitation"
METRICS = "metrics"
NOBODY = "nobody"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Caller:
    """Who is asking, by what credential, and what it may do."""

    kind: str
    # The account behind the credential; None for whoever holds a link or an
    # upload key without signing in, or for nobody.
    user: User | None = None
    # What an API token may do; None: whatever the kind of caller may.
    scopes: frozenset[str] | None = None
    # What stands behind the credential: a session's claims, an API token's
    # row, a link's LinkAccess, an upload.
    record: Any = None

    @property
    def is_session(self) -> bool:
        """A signed-in session (not an API token): it may manage tokens."""
        return self.kind == SESSION


@dataclass(frozen=True)
class LinkAccess:
    """What the holder of a share link brought, checked."""

    link: str
    share: Share
    # Its files with their positions (share_links.files_of): one, or several.
    files: list[tuple[int, StoredFile]]
    owner: User
    # A download's claim to this very link, within its resume window: it
    # resumes without counting and without the password.
    claimed: bool
    # The link has no password, or the right one came (Basic, the page's
    # form, the unlock cookie), or a claim did.
    unlocked: bool
    # A password came, and it was wrong.
    wrong_password: bool


@dataclass(frozen=True)
class UploadAccess:
    """What the holder of an upload's key opened: the upload, and its owner
    (who is not the caller unless the owner's own token came along)."""

    upload: ResumableUpload
    owner: User


@dataclass(frozen=True)
class RequestAccess:
    """What the holder of an upload request's link brought, checked."""

    link: str
    upload_request: UploadRequest
    owner: User
    # No password, or the right one came (Basic, the page's form, the cookie).
    unlocked: bool
    # A password came, and it was wrong.
    wrong_password: bool


@dataclass(frozen=True)
class InvitationAccess:
    """What an invitation's link opens: the invitation, and its account (who
    is not signed in by it)."""

    invitation: Invitation
    user: User


@dataclass(frozen=True)
class Renewal:
    """What a page's renewal brings, checked."""

    # The renewal cookie's claims (signature, expiry and issuer checked, not
    # yet whether it was used before); None when no good cookie came.
    cookie: dict | None
    # The account of the page's own ``?token=``, expired or not; None when
    # the page had no token, "" when it had one that is not ours.
    page_user: str | None


class SignInAttempt(NamedTuple):
    """The credentials a sign-in is checked with."""

    username: str | None  # canonical, or None when nobody can have it
    password: str
    typed: str  # the name as it came, to show back on the sign-in page
    # The second factor's code (X-Lockbox-OTP, or the body's ``otp``), and
    # the account a sign-in ticket names when the password came before
    # (two_factor.py); the username is then the ticket's.
    code: str | None = None
    ticket_user: User | None = None
    ticket: str | None = None


# --- what the request carries ------------------------------------------------


def _basic() -> Authorization | None:
    """The request's HTTP Basic credentials, or None."""
    auth = request.authorization
    return auth if auth is not None and auth.type == "basic" else None


def _bearer_value() -> str | None:
    """``Authorization: Bearer``'s value, perhaps empty; None for another
    scheme or none."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _bearer() -> str | None:
    """``Authorization: Bearer``'s value; a 401 when it is empty."""
    value = _bearer_value()
    if value == "":
        raise session_tokens.invalid_token()
    return value


def account_token() -> str | None:
    """An account's token: ``Authorization: Bearer`` first, then ``?token=``."""
    return _bearer() or request.args.get("token") or None


def page_token() -> str | None:
    """The ``?token=`` a page was opened with, which its links carry on."""
    return request.args.get("token") if has_request_context() else None


def page_address() -> str:
    """The page asked for, relative to the app's root, with its query string
    but not its ``token=``: where a browser comes back to."""
    query = [(name, v) for name, v in request.args.items(multi=True) if name != "token"]
    return request.path + (f"?{urlencode(query)}" if query else "")


def new_token_cookie() -> str:
    """The sealed new API token the page after the token form carries
    (personal_tokens.seal_new_token), or ""."""
    return request.cookies.get(personal_tokens.NEW_TOKEN_COOKIE, "")


def token_in_url() -> bool:
    """Whether the URL carries a token (its answer must not be stored)."""
    # The raw query string is searched first: parsing it costs more, and
    # almost no request has one.
    return b"token" in request.query_string and "token" in request.args


def sign_in_attempt() -> SignInAttempt:
    """The canonical username and the password this sign-in is checked with.

    ``GET /login`` takes HTTP Basic credentials, ``POST /login`` its form or
    JSON body and nothing else; the limits count against this same username,
    whatever else the request carries. Worked out once per request.
    """
    if "sign_in_attempt" not in g:
        username = password = ticket = None
        code = request.headers.get("X-Lockbox-OTP")
        body: dict = {}
        if request.method == "GET":
            basic = _basic()
            if basic is not None:
                username, password = basic.username, basic.password
        else:
            try:
                body = request_body()
            except ApiError:
                body = {}  # the view answers 400
            username, password = body.get("username"), body.get("password")
            ticket = body.get("ticket")
            code = body.get("otp", code)
        ticket_user = None
        if isinstance(ticket, str) and ticket:
            ticket_user = two_factor.ticket_user(ticket)
            username = ticket_user.username if ticket_user else None
        g.sign_in_attempt = SignInAttempt(
            canonical_username(username),
            password if isinstance(password, str) else "",
            username if isinstance(username, str) else "",
            code if isinstance(code, str) else None,
            ticket_user,
            ticket if isinstance(ticket, str) and ticket else None,
        )
    return g.sign_in_attempt


def checks_a_sign_in_password() -> bool:
    """Whether this sign-in request will check a password: a ``GET`` with
    Basic credentials, or any ``POST`` (the sign-in page itself checks none)."""
    return request.method != "GET" or _basic() is not None


def _claim() -> str:
    """The download claim a request brings: ``?claim=``, else its cookie."""
    return request.args.get("claim") or request.cookies.get(
        share_links.CLAIM_COOKIE, ""
    )


def _link_password() -> str | None:
    """The link password a request brings: the page's form field on a POST,
    Basic credentials (any username) otherwise; None when none came."""
    if request.method == "POST":
        return request.form.get("password", "")
    basic = _basic()
    return None if basic is None else basic.password or ""


def link_checks_no_password() -> bool:
    """Whether this request on a share link will check no password, and so
    counts against no password limit: only a form post of the page, or Basic
    credentials without a claim (whose holder needs no password), make it
    check one. Worked out from the request alone, before any query."""
    if request.method == "POST":
        return False
    if _basic() is None:
        return True
    public_id = share_links.public_id_of((request.view_args or {}).get("link", ""))
    return public_id is not None and share_links.claim_names(public_id, _claim())


def request_checks_no_password() -> bool:
    """Whether this request on an upload request's link checks no password,
    and so counts against no password limit: only the page's form post, or
    Basic credentials, make it check one."""
    if request.method == "POST" and request.endpoint == "upload_requests.guest_page":
        return False
    return _basic() is None


def request_link_key() -> str:
    """The per-link password limit's key for an upload request's link."""
    return "request:" + str((request.view_args or {}).get("link", ""))


# --- who it is -------------------------------------------------------------


def _identify(token: str) -> Caller:
    """The caller an account token makes, whatever it may do; a 401 for a
    token that opens nothing."""
    if token.startswith(personal_tokens.PAT_PREFIX):
        user, access_token = personal_tokens.verify_access_token(token)
        return Caller(
            ACCESS_TOKEN, user, frozenset(access_token.scope_list), access_token
        )
    user, claims = session_tokens.verify_token(token)
    return Caller(SESSION, user, None, claims)


def _provider_still_vouches(user: User | None) -> None:
    """An API token of an account that signs in only through the identity
    provider works while the provider still vouches for its person: asked
    when OIDC_RECHECK_SECONDS have passed (oidc.still_vouches), as a page
    session's renewal asks. Refused: every token of the account has ended
    (a 401); the provider down: a 503."""
    if user is None or user.password_hash is not None or user.oidc_subject is None:
        return
    try:
        vouched = oidc.still_vouches(user)
    except oidc.ProviderDown:
        raise ApiError(503, oidc.DOWN_MESSAGE) from None
    if vouched is False:
        raise session_tokens.invalid_token("revoked")


def _account(scopes: tuple[str, ...] | None) -> Caller:
    """The caller an account token makes, allowed the ``scopes`` (None: a
    signed-in session only); a 401 or 403 otherwise."""
    token = account_token()
    if token is None:
        raise session_tokens.invalid_token("missing")
    caller = _identify(token)
    if scopes is not None and ADMIN_SCOPE in scopes:
        assert caller.user is not None  # an account token always has its account
        if caller.user.role != ADMIN:
            raise ApiError(403, "This needs an administrator")
    if caller.kind == ACCESS_TOKEN:
        _provider_still_vouches(caller.user)
        if scopes is None:
            raise ApiError(403, "This needs a signed-in session, not an API token")
        for name in scopes:
            assert caller.scopes is not None  # an API token always has its scopes
            if name not in caller.scopes:
                raise ApiError(403, f"Token lacks the {name} scope")
    return caller


def _unlocked(
    password: str | None,
    opens: Callable[[str], bool],
    cookie_opens: Callable[[str], bool],
    cookie_name: str,
) -> tuple[bool, bool]:
    """Whether a link guarded by a password is open, and whether a wrong
    password came: the password that came, checked; else the unlock cookie
    the link's page set."""
    if password is not None:
        unlocked = opens(password)
        return unlocked, not unlocked
    return cookie_opens(request.cookies.get(cookie_name, "")), False


def _link(link: str) -> Caller:
    """The holder of a share link, and what they brought; 404 or 410 for a
    link that opens nothing (share_links.open_link)."""
    share, files, owner = share_links.open_link(link)
    claimed = share_links.claim_names(share.public_id, _claim())
    unlocked, wrong = True, False
    if share.password_hash is not None and not claimed:
        unlocked, wrong = _unlocked(
            _link_password(),
            functools.partial(share_links.password_opens, share),
            functools.partial(share_links.unlock_cookie_opens, share),
            share_links.UNLOCK_COOKIE,
        )
    access = LinkAccess(link, share, files, owner, claimed, unlocked, wrong)
    return Caller(LINK, None, None, access)


def _request_link(link: str, password_form: bool) -> Caller:
    """The holder of an upload request's link, and what they brought; 404 or
    410 for a link that takes nothing (request_links.open_request)."""
    upload_request, owner = request_links.open_request(link)
    unlocked, wrong = True, False
    if upload_request.password_hash is not None:
        password = None
        if request.method == "POST" and password_form:
            password = request.form.get("password", "")
        elif (basic := _basic()) is not None:
            password = basic.password or ""
        unlocked, wrong = _unlocked(
            password,
            functools.partial(request_links.password_opens, upload_request),
            functools.partial(request_links.unlock_cookie_opens, upload_request),
            request_links.UNLOCK_COOKIE,
        )
    access = RequestAccess(link, upload_request, owner, unlocked, wrong)
    return Caller(UPLOAD_REQUEST, None, None, access)


def _upload_key(key: str) -> Caller:
    """Whoever holds an upload's key: the upload and its owner on ``g``; the
    caller's own account when a valid token came along (it must be the
    owner's), else nobody's."""
    account = None
    try:
        token = account_token()
        if token is not None:
            account = _identify(token).user
    except ApiError:
        account = None  # an expired token: the key still opens the upload
    upload, owner = upload_keys.open_upload(key, account)
    return Caller(UPLOAD_KEY, account, None, UploadAccess(upload, owner))


def _invitation(secret: str) -> Caller:
    """Whoever holds an invitation's link: 404 or 410 for one that opens
    nothing (invitations.open_invitation)."""
    invitation, user = invitations.open_invitation(secret)
    return Caller(INVITATION, None, None, InvitationAccess(invitation, user))


def _metrics() -> Caller:
    """The metrics scraper: 404 while metrics are off, 401 without the token."""
    metrics_token.check(_bearer_value() or "")
    return Caller(METRICS)


def _mark(view: Callable[P, R], **marks: object) -> Callable[P, R]:
    """``view``, with ``marks`` set as its attributes (``caller_rule``, which
    the tests read back, and ``scopes``)."""
    vars(view).update(marks)
    return view


def _decorate(
    view: Callable[P, R], rule: str, resolve: Callable[..., Caller]
) -> Callable[P, R]:
    """``view``, run once ``resolve(**view_args)`` has said who the caller is
    (``g.caller``, and ``g.user``), and marked with ``rule``."""

    @functools.wraps(view)
    def wrapped_view(*args: P.args, **kwargs: P.kwargs) -> R:
        caller = resolve(**kwargs)
        g.caller, g.user = caller, caller.user
        return view(*args, **kwargs)

    return _mark(wrapped_view, caller_rule=rule)


def account(
    scope: str | tuple[str, ...] | None = None,
    when_refused: Callable[[ApiError], ResponseReturnValue | None] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R | ResponseReturnValue]]:
    """A view for an account's token: a signed-in session, or (when the view
    names its ``scope``, or several) a personal access token that has every
    scope named; a 403 naming the first one it lacks, before the view looks
    anything up. ``when_refused(error)``, when given, may answer a refusal
    itself (a page that sends a browser to sign in); None lets it through."""
    needed = (scope,) if isinstance(scope, str) else scope

    def decorate(view: Callable[P, R]) -> Callable[P, R | ResponseReturnValue]:
        @functools.wraps(view)
        def wrapped_view(*args: P.args, **kwargs: P.kwargs) -> R | ResponseReturnValue:
            try:
                caller = _account(needed)
            except ApiError as error:
                answer = None if when_refused is None else when_refused(error)
                if answer is None:
                    raise
                return answer
            g.caller, g.user = caller, caller.user
            return view(*args, **kwargs)

        return _mark(wrapped_view, caller_rule="account", scopes=needed)

    return decorate


def password(view: Callable[P, R]) -> Callable[P, R]:
    """A view that signs someone in with a username and password
    (``sign_in_attempt`` has them)."""
    return _decorate(view, "password", lambda **_: Caller(PASSWORD))


def _refresh_token() -> Caller:
    """The holder of a refresh token (Bearer or ``?token=``, else the body's
    ``refresh_token``), its signature and claims checked; a 400 for a body
    that is not one, a 401 for a token that is missing or refused. Who it
    belongs to, and whether it was used before, is the rotation's to say
    (a refresh token used twice revokes its whole family)."""
    body = load_or_400(refresh_body_schema, request_body())
    token = account_token() or body.get("refresh_token")
    if token is None:
        raise session_tokens.invalid_token("missing")
    return Caller(REFRESH_TOKEN, None, None, session_tokens.decode(token))


def refresh_token_holder(view: Callable[P, R]) -> Callable[P, R]:
    """A view for a refresh token; its verified claims are the caller's record."""
    return _decorate(view, "refresh_token", lambda **_: _refresh_token())


def _renewal() -> Caller:
    """Whoever holds a renewal cookie, and whose page it is renewing."""
    cookie = request.cookies.get(session_tokens.RENEW_COOKIE, "")
    claims = None
    if cookie:
        try:
            claims = session_tokens.decode(cookie)
        except ApiError:
            claims = None  # expired, or not ours: nothing to renew with
    page_user = None
    if request.args.get("token"):
        expired = expired_session_claims()
        page_user = "" if expired is None else str(expired["sub"])
    return Caller(RENEWAL, None, None, Renewal(claims, page_user))


def renewal(view: Callable[P, R]) -> Callable[P, R]:
    """A view for a page session's renewal cookie (a Renewal is the record)."""
    return _decorate(view, "renewal", lambda **_: _renewal())


def expired_session_claims() -> dict | None:
    """The claims of the request's signed-in session token, whether or not it
    has expired (its signature and issuer checked); None for none or another
    kind of token. It opens nothing: it says whose session it was."""
    token = account_token()
    if token is None or token.startswith(personal_tokens.PAT_PREFIX):
        return None
    try:
        claims = session_tokens.decode(token, expired_ok=True)
    except ApiError:
        return None
    if claims.get("typ") != session_tokens.ACCESS or not isinstance(
        claims.get("fam"), str
    ):
        return None
    return claims


def link(view: Callable[P, R]) -> Callable[P, R]:
    """A view for the holder of a share link (the ``link`` path argument)."""
    return _decorate(view, "link", lambda link, **_: _link(link))


def upload_request(
    password_form: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A view for the holder of an upload request's link (the ``link`` path
    argument). ``password_form``: a POST's form may carry the password (the
    page's); elsewhere a POST's body is the upload, never read for one."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        return _decorate(
            view,
            "upload_request",
            lambda link, **_: _request_link(link, password_form),
        )

    return decorate


def upload_key(view: Callable[P, R]) -> Callable[P, R]:
    """A view for the holder of an upload's key (the ``key`` path argument)."""
    return _decorate(view, "upload_key", lambda key, **_: _upload_key(key))


def invitation(view: Callable[P, R]) -> Callable[P, R]:
    """A view for the holder of an invitation's link (``secret`` in the path)."""
    return _decorate(view, "invitation", lambda secret, **_: _invitation(secret))


def metrics(view: Callable[P, R]) -> Callable[P, R]:
    """A view for the metrics scraper."""
    return _decorate(view, "metrics", lambda **_: _metrics())


def nobody(view: Callable[P, R]) -> Callable[P, R]:
    """A view that takes no credential at all."""
    return _decorate(view, "nobody", lambda **_: Caller(NOBODY))


def is_account_view(view: Callable[..., Any] | None) -> bool:
    """Whether ``view`` takes an account's token (its links carry ``?token=``)."""
    return getattr(view, "caller_rule", None) == "account"
