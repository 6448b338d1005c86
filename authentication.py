"""Identity: passwords, JSON Web Tokens, personal access tokens and their
scopes, the ``check_for_token`` decorator, login."""

import functools
import hashlib
import re
import secrets
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import jwt
from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    has_request_context,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import bindparam, func
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import DBAPIError
from werkzeug.security import check_password_hash, generate_password_hash

import rate_limits
from errors import ApiError, no_content, wants_html
from models import (
    AccessToken,
    RevokedToken,
    User,
    db,
    is_conflict,
    new_token_version,
    retry_on_conflict,
    utcnow,
)
from request_data import load_or_400, request_body
from schemas import logout_query_schema, refresh_body_schema, token_pair_schema

bp = Blueprint("auth", __name__)

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "iss", "typ", "ver"]
# Clock skew tolerated between the machines that issue and check tokens.
LEEWAY_SECONDS = 10
# Tokens are a few hundred bytes; anything far larger is not ours.
MAX_TOKEN_LENGTH = 4096

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Login required"'}
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="Lockbox"'}


# Who may have an account: the rules `users create` enforces. A name outside
# them belongs to nobody, so it never reaches the database (where MariaDB's
# PAD SPACE collation would find "bob" for "bob ").
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,79}")


def canonical_username(name) -> str | None:
    """The one spelling a username is looked up and rate-limited by, or None
    when ``name`` cannot be anybody's (not a string, or outside USERNAME_RE)."""
    if isinstance(name, str) and USERNAME_RE.fullmatch(name):
        return name
    return None


def sign_in_attempt() -> tuple[str | None, str]:
    """The canonical username and the password this sign-in is checked with.

    ``GET /login`` takes HTTP Basic credentials, ``POST /login`` its form or
    JSON body and nothing else; the limits count against this same username,
    whatever else the request carries. Worked out once per request.
    """
    if "sign_in_attempt" not in g:
        username = password = None
        if request.method == "GET":
            auth = request.authorization
            if auth is not None and auth.type == "basic":
                username, password = auth.username, auth.password
        else:
            try:
                body = request_body()
            except ApiError:
                body = {}  # the view answers 400
            username, password = body.get("username"), body.get("password")
        g.sign_in_attempt = (
            canonical_username(username),
            password if isinstance(password, str) else "",
        )
    return g.sign_in_attempt


def checks_a_password() -> bool:
    """Whether this sign-in request will check a password: a ``GET`` with
    Basic credentials, or any ``POST`` (the sign-in page itself checks none)."""
    if request.method != "GET":
        return True
    auth = request.authorization
    return auth is not None and auth.type == "basic"


def _login_username() -> str:
    """The sign-in limit's key: the canonical username the attempt is for."""
    return "username:" + (sign_in_attempt()[0] or "")


def _no_real_username() -> bool:
    """A request whose name no account can have (or with none) is exempt from
    the per-username limit: it checks nobody's password, and must never lock
    out a real user. The per-address limit still counts it."""
    return not checks_a_password() or sign_in_attempt()[0] is None


# Shared by GET and POST /login: guessing one way counts against the other.
limit_per_username = rate_limits.per_username(_login_username, _no_real_username)
limit_per_address = rate_limits.per_address(lambda: not checks_a_password())


def hash_password(password: str) -> str:
    """Hash a password with scrypt for storage."""
    return generate_password_hash(password, method="scrypt")


@functools.cache
def _dummy_hash() -> str:
    """A hash nobody's password matches, checked when the username is unknown."""
    return hash_password(secrets.token_urlsafe(32))


def authenticate(username: str | None, password: str) -> User | None:
    """Return the user these credentials belong to, or None.

    ``username`` is canonical (``canonical_username``) or None. An unknown or
    impossible username costs the same scrypt check as a wrong password, so the
    cases cannot be told apart by timing.
    """
    user = None
    if username is not None:
        user = db.session.execute(
            db.select(User).filter_by(username=username)
        ).scalar_one_or_none()
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    return user


ACCESS = "access"
REFRESH = "refresh"


def issue_token(user: User, kind: str, family: str) -> str:
    """Sign a token for ``user``: a short-lived access token or a refresh token.

    ``ver`` ties it to the account's random token version, checked on every
    request: the token opens this account only, and dies with the version when
    every token of the account is revoked; ``fam`` names the chain of
    refresh tokens it descends from, so that a reused refresh token can revoke
    the whole chain with the access tokens issued alongside it.
    """
    now = utcnow()
    lifetime = current_app.config[
        "TOKEN_TTL_SECONDS" if kind == ACCESS else "REFRESH_TTL_SECONDS"
    ]
    jti = uuid.uuid4().hex
    claims = {
        "sub": str(user.id),
        "iat": now,
        "exp": now + timedelta(seconds=lifetime),
        "jti": jti,
        "iss": current_app.config["JWT_ISSUER"],
        "typ": kind,
        "ver": user.token_version,
        "fam": family,
    }
    return jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=ALGORITHM)


# Why a token is refused: the API's message, and what a browser sent back to
# the sign-in page is told (nothing when it simply had no token).
TOKEN_PROBLEMS = {
    "missing": ("Token missing", None),
    "invalid": ("Invalid token", "Your sign-in is no longer valid — sign in again"),
    "expired": ("Token expired", "Your session expired — sign in again"),
    "revoked": ("Token revoked", "You signed out — sign in again"),
}


def invalid_token(reason: str = "invalid") -> ApiError:
    """The 401 every token failure answers with; ``reason`` is a TOKEN_PROBLEMS key."""
    return ApiError(401, TOKEN_PROBLEMS[reason][0], BEARER_CHALLENGE, reason=reason)


def _decode(token: str) -> dict:
    """Verify signature and registered claims with the current key or an old one."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token()
    config = current_app.config
    for key in [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=current_app.config["JWT_ISSUER"],
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise invalid_token("expired") from None
        except jwt.InvalidTokenError:
            raise invalid_token() from None
    raise invalid_token()


# Statements used on every request are built once and run with parameters:
# building one costs more than running it.
ANY_REVOKED = (
    db.select(RevokedToken.jti)
    .where(RevokedToken.jti.in_(bindparam("names", expanding=True)))
    .exists()
)
IS_REVOKED = db.select(ANY_REVOKED)
# The user and the revocation list, both checked, in one round trip.
USER_AND_REVOKED = db.select(User, ANY_REVOKED).where(User.id == bindparam("user_id"))


def is_revoked(*names: str) -> bool:
    """Whether any of these token ids or family names has been revoked."""
    return db.session.execute(IS_REVOKED, {"names": list(names)}).scalar_one()


def verify_token(token: str, kind: str = ACCESS) -> tuple[User, dict]:
    """Check a token's signature, claims and revocation; its user and claims.

    Anything wrong is a 401: "Token expired", "Token revoked" or "Invalid token".
    """
    claims = _decode(token)
    return _user_for(claims, kind), claims


def _user_for(claims: dict, kind: str) -> User:
    """The user of verified claims of this kind, unless revoked; else a 401."""
    subject = claims["sub"]
    if not (subject.isascii() and subject.isdigit() and len(subject) <= 18):
        raise invalid_token()
    if claims["typ"] != kind or not isinstance(claims.get("fam"), str):
        raise invalid_token()
    names = [str(claims["jti"]), "family:" + claims["fam"]]
    found = db.session.execute(
        USER_AND_REVOKED, {"user_id": int(subject), "names": names}
    ).one_or_none()
    if found is None:
        raise invalid_token()
    user, revoked = found
    if claims.get("ver") != user.token_version or revoked:
        raise invalid_token("revoked")
    return user


def _record_revocation(name: str, expires_at: datetime, extend: bool) -> int:
    """Insert a revocation in one statement, in the database's own upsert form;
    how many rows it inserted.

    A row already there is kept as it is, or (``extend``) kept with the later
    of the two expiry times. Never a read then a write: two requests at once
    cannot both insert, and neither fails on the primary key.
    """
    dialect = db.session.get_bind().dialect.name
    if dialect == "sqlite":
        insert = sqlite.insert(RevokedToken).values(jti=name, expires_at=expires_at)
        if extend:
            later = func.max(RevokedToken.expires_at, insert.excluded.expires_at)
            insert = insert.on_conflict_do_update(
                index_elements=["jti"], set_={"expires_at": later}
            )
        else:
            insert = insert.on_conflict_do_nothing(index_elements=["jti"])
    elif dialect in ("mysql", "mariadb"):
        insert = mysql.insert(RevokedToken).values(jti=name, expires_at=expires_at)
        if extend:
            later = func.greatest(RevokedToken.expires_at, insert.inserted.expires_at)
            insert = insert.on_duplicate_key_update(expires_at=later)
        else:
            insert = insert.prefix_with("IGNORE")
    else:
        raise NotImplementedError(f"No upsert for the {dialect} dialect")
    return db.session.execute(insert).rowcount


def retire_token(jti: str, expires_at: datetime) -> bool:
    """Revoke one token id until ``expires_at``; False when it was revoked
    already, by this request's rival too (not committed)."""
    return _record_revocation(jti, expires_at, extend=False) == 1


def revoke_family(family: str) -> None:
    """Revoke every token of a sign-in, past and future (not committed).

    Refresh tokens of a family keep being issued until it is revoked, each
    living REFRESH_TTL_SECONDS, so no token of it can outlive now plus the
    longest lifetime: the revocation is kept (at least) that long, and a later
    revocation of the same family extends an earlier one. Used by sign-out, by
    the detection of a reused refresh token and by a lost refresh race alike.
    """
    config = current_app.config
    lifetime = max(config["REFRESH_TTL_SECONDS"], config["TOKEN_TTL_SECONDS"])
    until = utcnow() + timedelta(seconds=lifetime + LEEWAY_SECONDS)
    _record_revocation("family:" + family, until, extend=True)


def revoke_all_tokens(user: User) -> None:
    """End every token the account holds, on every device, its personal access
    tokens and its share links too (not committed).

    The new version alone ends them all (each carries the version it was made
    under); the access tokens are deleted as well, so that no list shows them.
    """
    user.token_version = new_token_version()
    db.session.execute(db.delete(AccessToken).where(AccessToken.user_id == user.id))


def prune_revoked() -> int:
    """Forget revocations of tokens that have expired anyway; how many."""
    cutoff = utcnow() - timedelta(seconds=LEEWAY_SECONDS)
    result = db.session.execute(
        db.delete(RevokedToken).where(RevokedToken.expires_at < cutoff)
    )
    return result.rowcount


def token_from_request() -> str | None:
    """The request's token: ``Authorization: Bearer`` first, then ``?token=``."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        value = value.strip()
        if not value:
            raise invalid_token()
        return value
    return request.args.get("token") or None


# Personal access tokens: "lbx_", 40 random base62 characters, and a CRC32 of
# them in 6 more, so that secret scanners can find one by its prefix and check
# it without asking us (as GitHub's tokens do).
PAT_PREFIX = "lbx_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PAT_RANDOM_LENGTH = 40
PAT_RE = re.compile(r"lbx_([0-9A-Za-z]{40})([0-9A-Za-z]{6})")
# How often a token's last use is written down: not on every request.
LAST_USED_PRECISION = timedelta(minutes=1)


def _base62(number: int, width: int) -> str:
    """``number`` in base62, ``width`` digits."""
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def new_access_token() -> str:
    """A fresh personal access token: prefix, random part, checksum."""
    body = "".join(secrets.choice(BASE62) for _ in range(PAT_RANDOM_LENGTH))
    return PAT_PREFIX + body + _base62(zlib.crc32(body.encode()), 6)


def access_token_hash(token: str) -> str:
    """What is stored of an access token. A fast hash is enough: the token has
    238 random bits, nothing to guess from."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


ACCESS_TOKEN_AND_USER = (
    db.select(AccessToken, User)
    .join(User, User.id == AccessToken.user_id)
    .where(AccessToken.token_hash == bindparam("token_hash"))
)


def verify_access_token(token: str) -> tuple[User, AccessToken]:
    """The user a personal access token opens, and the token's row; else a 401.

    A token whose checksum does not match is refused without a query.
    """
    match = PAT_RE.fullmatch(token)
    if match is None or match[2] != _base62(zlib.crc32(match[1].encode()), 6):
        raise invalid_token()
    found = db.session.execute(
        ACCESS_TOKEN_AND_USER, {"token_hash": access_token_hash(token)}
    ).one_or_none()
    if found is None:
        raise invalid_token()
    access_token, user = found
    if access_token.owner_version != user.token_version:
        raise invalid_token("revoked")
    if access_token.expires_at is not None and access_token.expires_at <= utcnow():
        raise invalid_token("expired")
    _note_use(access_token)
    return user, access_token


def _note_use(access_token: AccessToken) -> None:
    """Write down that the token was used, at most once a minute."""
    now = utcnow()
    cutoff = now - LAST_USED_PRECISION
    if access_token.last_used_at is not None and access_token.last_used_at > cutoff:
        return
    try:
        db.session.execute(
            db.update(AccessToken)
            .where(
                AccessToken.id == access_token.id,
                (AccessToken.last_used_at.is_(None))
                | (AccessToken.last_used_at <= cutoff),
            )
            .values(last_used_at=now)
        )
        db.session.commit()
    except DBAPIError as error:
        # Another request of the same token wrote it a moment ago.
        db.session.rollback()
        if not is_conflict(error):
            raise
    access_token.last_used_at = now


def verify_credential(token: str) -> tuple[User, dict | AccessToken]:
    """The user a bearer credential opens, and what it is: a JSON Web Token's
    claims, or a personal access token's row. Anything wrong is a 401."""
    if token.startswith(PAT_PREFIX):
        return verify_access_token(token)
    return verify_token(token)


def check_for_token(view=None, *, scope: str | tuple[str, ...] | None = None):
    """Let the view run only for a valid token; put its user on ``g.user``.

    ``@check_for_token`` alone takes a signed-in session's token (a JSON Web
    Token) and nothing else; ``@check_for_token(scope="files:read")`` also takes
    a personal access token that has the scope, and
    ``scope=("files:read", "shares:write")`` one that has every scope named. A
    personal access token without them gets a 403 naming the first one it
    lacks, before the view looks anything up (``g.access_token`` is the
    token's row; a session's claims are on ``g.claims``).

    API clients get the 401 JSON error; a browser is sent to the sign-in page,
    told why when its token has expired or is no longer valid.
    """
    if view is None:
        return functools.partial(check_for_token, scope=scope)
    needed = (scope,) if isinstance(scope, str) else scope

    @functools.wraps(view)
    def wrapped_view(*args, **kwargs):
        try:
            token = token_from_request()
            if token is None:
                raise invalid_token("missing")
            g.user, credential = verify_credential(token)
        except ApiError as error:
            if error.code != 401 or not wants_html():
                raise
            told = TOKEN_PROBLEMS.get(error.reason, (None, None))[1]
            if told:
                flash(told, "error")
            return redirect(url_for("auth.login"), 303)
        if isinstance(credential, AccessToken):
            if needed is None:
                raise ApiError(403, "This needs a signed-in session, not an API token")
            held = credential.scope_list
            for name in needed:
                if name not in held:
                    raise ApiError(403, f"Token lacks the {name} scope")
            g.access_token, g.claims = credential, None
        else:
            g.access_token, g.claims = None, credential
        g.token = token
        return view(*args, **kwargs)

    wrapped_view.needs_token = True
    wrapped_view.scopes = needed
    return wrapped_view


@bp.app_url_defaults
def keep_the_page_token(endpoint: str, values: dict) -> None:
    """Links and forms on a page carry the ``?token=`` the page was opened with,
    to every view that needs a token: the tutorial's browser flow, in one place
    instead of every ``url_for`` (which can still say ``token=None``)."""
    token = request.args.get("token") if has_request_context() else None
    if not token or "token" in values:
        return
    view = current_app.view_functions.get(endpoint)
    if getattr(view, "needs_token", False):
        # First in the query string, as the pages always wrote it.
        others = dict(values)
        values.clear()
        values.update(token=token, **others)


def token_response(user: User, family: str | None = None):
    """The JSON answer to a sign-in or a refresh: an access and a refresh token."""
    family = family or uuid.uuid4().hex
    refresh_token = issue_token(user, REFRESH, family)
    response = jsonify(
        token_pair_schema.dump(
            {
                "token": issue_token(user, ACCESS, family),
                "token_type": "Bearer",
                "expires_in": current_app.config["TOKEN_TTL_SECONDS"],
                "refresh_token": refresh_token,
                "refresh_expires_in": current_app.config["REFRESH_TTL_SECONDS"],
            }
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/login")
@limit_per_username
@limit_per_address
def login():
    """Exchange HTTP Basic credentials for tokens; browsers get the sign-in page.
    ---
    get:
      security:
      - basic: []
      responses:
        200:
          description: Access and refresh tokens (or, for a browser, the page)
          content:
            application/json:
              schema: TokenPairSchema
            text/html: {}
        401: BadCredentials
    """
    auth = request.authorization
    if auth is None and wants_html():
        if request.args.get("expired"):
            flash(TOKEN_PROBLEMS["expired"][1], "error")
        return render_template("login.html")
    user = authenticate(*sign_in_attempt())
    if user is None:
        raise ApiError(401, "Unable to verify", BASIC_CHALLENGE)
    return token_response(user)


@bp.post("/login")
@limit_per_username
@limit_per_address
def login_form():
    """Sign in with a username and password, as a form or a JSON body.

    A browser is sent on to its files with the token in the URL; an API client
    gets the same JSON as ``GET /login``.
    ---
    post:
      security: []
      requestBody:
        required: true
        content:
          application/json:
            schema: CredentialsSchema
          application/x-www-form-urlencoded:
            schema: CredentialsSchema
      responses:
        200:
          description: Access and refresh tokens
          content:
            application/json:
              schema: TokenPairSchema
        303:
          description: A browser, sent on to its files
        401: BadCredentials
    """
    username = request_body().get("username")
    user = authenticate(*sign_in_attempt())
    if user is not None and wants_html():
        token = issue_token(user, ACCESS, uuid.uuid4().hex)
        return redirect(url_for("files.index", token=token), 303)
    if user is not None:
        return token_response(user)
    if wants_html():
        page = render_template(
            "login.html",
            error="Wrong username or password",
            username=username if isinstance(username, str) else "",
        )
        return page, 401
    raise ApiError(401, "Unable to verify", BASIC_CHALLENGE)


@bp.post("/logout")
@check_for_token
def logout():
    """Revoke the token and its sign-in's refresh tokens (everywhere=1: all).

    With ``?everywhere=1``, every token the user holds, on every device.
    ---
    post:
      parameters:
      - in: query
        schema: LogoutQuerySchema
      responses:
        204:
          description: Signed out
        303:
          description: A browser, sent to the sign-in page
    """
    everywhere = load_or_400(logout_query_schema, request.args.to_dict())["everywhere"]

    @retry_on_conflict
    def sign_out():
        if everywhere:
            revoke_all_tokens(g.user)
        else:
            # This token, and the refresh tokens of the same sign-in with it.
            retire_token(
                str(g.claims["jti"]), datetime.fromtimestamp(g.claims["exp"], UTC)
            )
            revoke_family(g.claims["fam"])
        prune_revoked()

    sign_out()
    if wants_html():
        flash("You are signed out", "success")
        return redirect(url_for("auth.login"), 303)
    return no_content()


@bp.post("/refresh")
def refresh():
    """Trade a refresh token for a new pair; the old one is retired.

    Presenting a retired one again means it was copied: the whole family
    (every token descended from the same sign-in) is revoked.
    ---
    post:
      security:
      - bearer: []
      requestBody:
        required: false
        content:
          application/json:
            schema: RefreshBodySchema
          application/x-www-form-urlencoded:
            schema: RefreshBodySchema
      responses:
        200:
          description: A new access and refresh token
          content:
            application/json:
              schema: TokenPairSchema
        401: TokenError
    """
    body = load_or_400(refresh_body_schema, request_body())
    token = token_from_request() or body.get("refresh_token")
    if token is None:
        raise invalid_token("missing")
    claims = _decode(token)

    @retry_on_conflict
    def rotate() -> User | None:
        """Retire the token and return its user; None when it was retired before."""
        if claims.get("typ") == REFRESH and isinstance(claims.get("fam"), str):
            if is_revoked(str(claims["jti"])):
                revoke_family(claims["fam"])
                return None
        user = _user_for(claims, REFRESH)
        expiry = datetime.fromtimestamp(claims["exp"], UTC)
        if not retire_token(str(claims["jti"]), expiry):
            # Another request retired the same token a moment ago: a reuse too.
            revoke_family(claims["fam"])
            return None
        return user

    user = rotate()
    if user is None:
        current_app.logger.warning("Refresh token reused; family revoked")
        raise invalid_token("revoked")
    return token_response(user, claims["fam"])
