"""Personal access tokens: made, listed and revoked by their owner.

A script or a CI job gets a token of its own instead of a password: opaque,
``lbx_`` and 46 base62 characters (personal_tokens.py makes and checks them),
limited to the scopes it was given and to its lifetime, and shown once. Only
a signed-in session may make, list or revoke them: a personal access token
cannot make another one. Signing out everywhere, or a new password, ends them
all; deleting the account deletes them.
"""

from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

import caller
from authentication import check_for_token
from errors import ApiError, no_content, wants_html
from page_sessions import end_private_cookie, set_private_cookie
from personal_tokens import (
    NEW_TOKEN_COOKIE,
    SHOWN_ONCE_SECONDS,
    create_access_token,
    revoke,
    seal_new_token,
    tokens_of,
    unseal_new_token,
)
from request_data import load_or_400, request_body
from schemas import (
    SCOPES,
    access_token_list_schema,
    access_token_request_schema,
    new_access_token_schema,
)

bp = Blueprint("access_tokens", __name__)

TOKEN_ID = "<int:token_id>"


def _token_request() -> dict[str, Any]:
    """The new token's settings, from JSON or the page's form."""
    body = request_body()
    if not request.is_json:
        # The form: scopes are checkboxes; an empty or "never" expiry select.
        form = request.form
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
def create_token() -> ResponseReturnValue:
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
        303:
          description: A browser, sent to the tokens page that shows it once
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
        # On to the tokens page, which shows the token once: a reload of
        # that page makes no second one.
        response = redirect(url_for("access_tokens.list_tokens"), 303)
        set_private_cookie(
            response,
            NEW_TOKEN_COOKIE,
            seal_new_token(access_token, token),
            url_for("access_tokens.list_tokens", token=None),
            SHOWN_ONCE_SECONDS,
            samesite="Strict",
        )
        return response
    body = new_access_token_schema.dump(access_token) | {"token": token}
    return jsonify(body), 201, {"Cache-Control": "no-store"}


@bp.get("/tokens")
@check_for_token
def list_tokens() -> ResponseReturnValue:
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
    if not wants_html():
        return jsonify(access_token_list_schema.dump({"items": tokens}))
    sealed = caller.new_token_cookie()
    new_token = unseal_new_token(sealed, g.user) if sealed else None
    response = make_response(
        render_template(
            "tokens.html", tokens=tokens, scopes=SCOPES, new_token=new_token
        )
    )
    if sealed:
        # Shown this once: the next view of the page has nothing to show.
        end_private_cookie(
            response,
            NEW_TOKEN_COOKIE,
            url_for("access_tokens.list_tokens", token=None),
            samesite="Strict",
        )
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.delete(f"/tokens/{TOKEN_ID}")
@check_for_token
def revoke_token(token_id: int) -> ResponseReturnValue:
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
def revoke_token_form(token_id: int) -> ResponseReturnValue:
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
