"""Identity: passwords, JSON Web Tokens, the ``check_for_token`` decorator, login."""

import functools
import secrets
import uuid
from datetime import timedelta

import jwt
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
from werkzeug.security import check_password_hash, generate_password_hash

from errors import ApiError, wants_html
from models import User, db, utcnow

bp = Blueprint("auth", __name__)

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "iss"]
# Clock skew tolerated between the machines that issue and check tokens.
LEEWAY_SECONDS = 10
# Tokens are a few hundred bytes; anything far larger is not ours.
MAX_TOKEN_LENGTH = 4096

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Login required"'}
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="Lockbox"'}


def hash_password(password: str) -> str:
    """Hash a password with scrypt for storage."""
    return generate_password_hash(password, method="scrypt")


@functools.cache
def _dummy_hash() -> str:
    """A hash nobody's password matches, checked when the username is unknown."""
    return hash_password(secrets.token_urlsafe(32))


def authenticate(username: str, password: str) -> User | None:
    """Return the user these credentials belong to, or None.

    An unknown username costs the same scrypt check as a wrong password, so the
    two cannot be told apart by timing.
    """
    user = db.session.execute(
        db.select(User).filter_by(username=username)
    ).scalar_one_or_none()
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    return user


def issue_token(user: User) -> str:
    """Sign a short-lived access token for ``user``."""
    now = utcnow()
    claims = {
        "sub": str(user.id),
        "iat": now,
        "exp": now + timedelta(seconds=current_app.config["TOKEN_TTL_SECONDS"]),
        "jti": uuid.uuid4().hex,
        "iss": current_app.config["JWT_ISSUER"],
    }
    return jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=ALGORITHM)


def invalid_token(message: str = "Invalid token") -> ApiError:
    """The 401 every token failure answers with."""
    return ApiError(401, message, BEARER_CHALLENGE)


def verify_token(token: str) -> User:
    """Check a token's signature and claims; return its user or raise a 401."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token()
    try:
        claims = jwt.decode(
            token,
            current_app.config["SECRET_KEY"],
            algorithms=[ALGORITHM],
            issuer=current_app.config["JWT_ISSUER"],
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise invalid_token("Token expired") from None
    except jwt.InvalidTokenError:
        raise invalid_token() from None
    subject = claims["sub"]
    if not (subject.isascii() and subject.isdigit() and len(subject) <= 18):
        raise invalid_token()
    user = db.session.get(User, int(subject))
    if user is None:
        raise invalid_token()
    return user


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


SIGN_IN_AGAIN = {
    "Token expired": "Your session expired — sign in again",
    "Invalid token": "Your sign-in is no longer valid — sign in again",
}


def check_for_token(view):
    """Let the view run only for a valid token; put its user on ``g.user``.

    API clients get the 401 JSON error; a browser is sent to the sign-in page,
    told why when its token has expired or is no longer valid.
    """

    @functools.wraps(view)
    def wrapped_view(*args, **kwargs):
        try:
            token = token_from_request()
            if token is None:
                raise invalid_token("Token missing")
            g.user = verify_token(token)
        except ApiError as error:
            if error.code != 401 or not wants_html():
                raise
            if error.description in SIGN_IN_AGAIN:
                flash(SIGN_IN_AGAIN[error.description], "error")
            return redirect(url_for("auth.login"), 303)
        g.token = token
        return view(*args, **kwargs)

    return wrapped_view


def token_response(user: User):
    """The JSON answer to a successful sign-in."""
    response = jsonify(
        token=issue_token(user),
        token_type="Bearer",
        expires_in=current_app.config["TOKEN_TTL_SECONDS"],
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/login")
def login():
    """Exchange HTTP Basic credentials for a token; browsers get the sign-in page."""
    auth = request.authorization
    if auth is None and wants_html():
        if request.args.get("expired"):
            flash(SIGN_IN_AGAIN["Token expired"], "error")
        return render_template("login.html")
    user = None
    if auth is not None and auth.type == "basic" and auth.username:
        user = authenticate(auth.username, auth.password or "")
    if user is None:
        raise ApiError(401, "Unable to verify", BASIC_CHALLENGE)
    return token_response(user)


@bp.post("/login")
def login_form():
    """Sign in with a form (the sign-in page) or a JSON body.

    A browser is sent on to its files with the token in the URL; an API client
    gets the same JSON as ``GET /login``.
    """
    if request.is_json:
        body = request.get_json(silent=True)
        credentials = body if isinstance(body, dict) else {}
    else:
        credentials = request.form
    username = credentials.get("username")
    password = credentials.get("password")
    user = None
    if isinstance(username, str) and isinstance(password, str) and username:
        user = authenticate(username, password)
    if user is not None and wants_html():
        return redirect(url_for("files.index", token=issue_token(user)), 303)
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
