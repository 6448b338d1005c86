"""Personal access tokens: made, listed and revoked by their owner.

A script or a CI job gets a token of its own instead of a password: opaque,
``lbx_`` and 46 base62 characters (authentication.py makes and checks them),
limited to the scopes it was given and to its lifetime, and shown once. Only
a signed-in session may make, list or revoke them: a personal access token
cannot make another one. Signing out everywhere, or a new password, ends them
all; deleting the account deletes them.
"""

from datetime import timedelta

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

from authentication import (
    PAT_PREFIX,
    access_token_hash,
    check_for_token,
    new_access_token,
)
from errors import ApiError, no_content, wants_html
from models import MAX_INT_ID, AccessToken, User, db, utcnow
from request_data import load_or_400, request_body
from schemas import (
    SCOPES,
    access_token_list_schema,
    access_token_request_schema,
    new_access_token_schema,
)

bp = Blueprint("access_tokens", __name__)

# Characters of the token kept to recognise it: the prefix and 8 more.
SHOWN_CHARACTERS = len(PAT_PREFIX) + 8
# Tokens one account may hold at once.
MAX_TOKENS_PER_USER = 100
TOKEN_ID = "<int:token_id>"
NO_EXPIRY_REFUSED = "expires_in: null (no expiry) is not allowed on this server"


def create_access_token(
    user: User, name: str, scopes: list[str], expires_in: int | None
) -> tuple[AccessToken, str]:
    """Make a token for ``user`` (committed); its row and the token itself.

    ``expires_in`` is seconds, or None for a token that never expires, which
    only PAT_ALLOW_NO_EXPIRY permits (ValueError otherwise).
    """
    if expires_in is None and not current_app.config["PAT_ALLOW_NO_EXPIRY"]:
        raise ValueError(NO_EXPIRY_REFUSED)
    count = db.session.execute(
        db.select(db.func.count()).select_from(AccessToken).filter_by(user_id=user.id)
    ).scalar_one()
    if count >= MAX_TOKENS_PER_USER:
        raise ApiError(
            409, f"An account may hold {MAX_TOKENS_PER_USER} tokens; revoke some first"
        )
    token = new_access_token()
    now = utcnow()
    access_token = AccessToken(
        user_id=user.id,
        name=name,
        token_hash=access_token_hash(token),
        prefix=token[:SHOWN_CHARACTERS],
        # In SCOPES' order, each once.
        scopes=" ".join(scope for scope in SCOPES if scope in scopes),
        owner_version=user.token_version,
        created_at=now,
        expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
    )
    db.session.add(access_token)
    db.session.commit()
    return access_token, token


def tokens_of(user: User) -> list[AccessToken]:
    """A user's tokens, newest first."""
    return list(
        db.session.execute(
            db.select(AccessToken)
            .filter_by(user_id=user.id)
            .order_by(AccessToken.created_at.desc(), AccessToken.id.desc())
        ).scalars()
    )


def _token_request() -> dict:
    """The new token's settings, from JSON or the page's form."""
    body = request_body()
    if not request.is_json:
        # The form: scopes are checkboxes; an empty or "never" expiry select.
        form = body
        body = {"name": form.get("name", ""), "scopes": form.getlist("scopes")}
        expires_in = form.get("expires_in", "").strip()
        if expires_in == "never":
            body["expires_in"] = None
        elif expires_in:
            body["expires_in"] = expires_in
    settings = load_or_400(access_token_request_schema, body)
    settings["name"] = settings["name"].strip()
    if not settings["name"]:
        raise ApiError(400, "name: name must be 1 to 80 characters")
    settings.setdefault("expires_in", current_app.config["PAT_DEFAULT_SECONDS"])
    return settings


@bp.post("/tokens")
@check_for_token
def create_token():
    """Make a personal access token; the token is in this answer only.
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: AccessTokenRequestSchema
          application/x-www-form-urlencoded:
            schema: AccessTokenRequestSchema
      responses:
        201:
          description: The token, shown this once
          content:
            application/json:
              schema: NewAccessTokenSchema
            text/html: {}
        403: Forbidden
        409:
          description: The account holds as many tokens as it may
          content:
            application/json:
              schema: ErrorSchema
    """
    settings = _token_request()
    try:
        access_token, token = create_access_token(g.user, **settings)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    if wants_html():
        page = render_template(
            "tokens.html", tokens=tokens_of(g.user), new_token=token, scopes=SCOPES
        )
        return page, 201, {"Cache-Control": "no-store"}
    body = new_access_token_schema.dump(access_token) | {"token": token}
    return jsonify(body), 201, {"Cache-Control": "no-store"}


@bp.get("/tokens")
@check_for_token
def list_tokens():
    """Your personal access tokens, newest first (a page for browsers).
    ---
    get:
      responses:
        200:
          description: The tokens (never the tokens themselves)
          content:
            application/json:
              schema: AccessTokenListSchema
            text/html: {}
        403: Forbidden
    """
    tokens = tokens_of(g.user)
    if wants_html():
        return render_template("tokens.html", tokens=tokens, scopes=SCOPES)
    return jsonify(access_token_list_schema.dump({"items": tokens}))


def revoke(user: User, token_id: int) -> AccessToken:
    """Delete one of ``user``'s tokens (committed); 404 when there is none."""
    access_token = None
    if 1 <= token_id <= MAX_INT_ID:
        access_token = db.session.execute(
            db.select(AccessToken).filter_by(id=token_id, user_id=user.id)
        ).scalar_one_or_none()
    if access_token is None:
        raise ApiError(404, "Token not found")
    db.session.delete(access_token)
    db.session.commit()
    return access_token


@bp.delete(f"/tokens/{TOKEN_ID}")
@check_for_token
def revoke_token(token_id):
    """Revoke a personal access token: it is refused (401) from now on.
    ---
    delete:
      parameters: [TokenId]
      responses:
        204:
          description: Revoked
        403: Forbidden
        404: TokenNotFound
    """
    revoke(g.user, token_id)
    return no_content()


@bp.post(f"/tokens/{TOKEN_ID}/revoke")
@check_for_token
def revoke_token_form(token_id):
    """Revoke a personal access token from the page (HTML).
    ---
    post:
      parameters: [TokenId]
      responses:
        303:
          description: Revoked; back to the tokens page
        403: Forbidden
        404: TokenNotFound
    """
    access_token = revoke(g.user, token_id)
    flash(f"Token {access_token.name} revoked", "success")
    return redirect(url_for("access_tokens.list_tokens"), 303)
