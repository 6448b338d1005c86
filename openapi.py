"""The OpenAPI 3.1 description of the API, made from the views themselves.

Each view says what it takes and answers in its own docstring (the YAML after
``---``, apispec's Flask plugin reads it); the shapes are the marshmallow
schemas of schemas.py, the same ones that load requests and produce answers.
Nothing here repeats a route. What is shared is added to every operation: the
summary (the docstring's first line), and the answers any layer may give
(gunicorn's and nginx's as well as the app's), in the one error shape.
"""

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Config, Flask, Response, current_app, jsonify

import caller
from caller import is_account_view
from models import MAX_INT_ID
from schemas import ErrorSchema

bp = Blueprint("openapi", __name__)

ERROR = {"application/json": {"schema": ErrorSchema}}
# Answers of one kind, named once and referred to by name from the docstrings.
RESPONSES = {
    "TokenError": "Token missing, invalid, expired or revoked",
    "SignInAgain": "A browser without a valid token, sent to the sign-in page",
    "BadCredentials": "Unable to verify: wrong or missing credentials, or (with "
    "X-Lockbox-OTP: required; app) a second factor's code missing or wrong",
    "NotFound": "No such file of yours",
    "Forbidden": "Cross-site request refused, or an API token without the scope "
    "this needs (or one where only a signed-in session will do)",
    # The tus protocol's own (uploads.py).
    "TusVersion": "Tus-Resumable is missing or not 1.0.0 (Tus-Version says which)",
    "TusMediaType": "A piece must be application/offset+octet-stream",
    "UploadConflict": "Upload-Offset is not the upload's offset",
    "ChecksumMismatch": "Upload-Checksum does not match the piece; it was not kept",
    "UploadNotFound": "No such upload, or not yours",
    "UploadExpired": "The upload expired",
    # Share links (shares.py).
    "LinkNotFound": "No such link (an unknown and a tampered link alike)",
    "LinkGone": "The link has expired, was revoked or is used up, or every file of"
    " it was deleted",
    "LinkLocked": "The link's password is needed, or was wrong",
    "RangeNotSatisfiable": "Range not satisfiable",
    "ShareNotFound": "No such link of yours",
    "TokenNotFound": "No such token of yours",
    "WebhookNotFound": "No such webhook (or delivery) of yours",
    "RequestNotFound": "No such upload request (an unknown and a tampered link alike)",
    "RequestGone": "The upload request is closed, expired, withdrawn or full",
    "OwnRequestNotFound": "No such upload request of yours",
    "RequestLocked": "The upload request's password is needed, or was wrong",
    "RequestKind": "A kind of file the upload request does not take (or, for "
    "the form, a body that is not multipart/form-data)",
    # Single sign-on (sso.py) and the second factor (account.py).
    "NoSingleSignOn": "Single sign-on is not set up on this site",
    "ProviderDown": "The identity provider can't be reached",
    "TwoFactorOn": "Two-factor sign-in is on already",
    # The admin area (admin.py).
    "UserNotFound": "No such user",
    "RowNotFound": "No such link, upload request, token or webhook",
    "LastAdmin": "Not your own account, and never the last administrator",
    "BackToThePage": "A browser, back to the page it came from",
    "InvitationNotFound": "No such invitation",
    "InvitationGone": "The invitation was used or has expired, or its account is "
    "disabled",
}
# Request headers of the tus protocol, named once (uploads.py).
TUS_PARAMETERS = {
    "TusResumable": {
        "name": "Tus-Resumable",
        "required": True,
        "schema": {"type": "string", "enum": ["1.0.0"]},
    },
    "UploadLength": {
        "name": "Upload-Length",
        "required": False,
        "schema": {"type": "integer", "minimum": 0},
    },
    "UploadDeferLength": {
        "name": "Upload-Defer-Length",
        "required": False,
        "schema": {"type": "integer", "enum": [1]},
    },
    "UploadMetadata": {
        "name": "Upload-Metadata",
        "required": False,
        "schema": {"type": "string"},
        "description": "filename, filetype and description, each base64-encoded",
    },
}
# Answers any operation can get, from the app or from the layers in front of it
# (gunicorn, nginx): added to every operation that does not describe the status
# itself.
SHARED_RESPONSES = {
    "400": ("BadRequest", "A request the server could not parse, or bad input"),
    "413": ("TooLarge", "The request body is over a limit"),
    "414": ("UriTooLong", "The request line is over the server's limit"),
    "429": ("TooManyRequests", "Too many requests; wait for Retry-After"),
    "431": ("HeadersTooLarge", "The request headers are over the server's limit"),
    "502": ("BadGateway", "The proxy in front got no answer from the app"),
    "503": ("Unavailable", "Database unavailable or busy; retry after Retry-After"),
    "504": ("GatewayTimeout", "The proxy in front timed out waiting for the app"),
}
# What every view behind check_for_token may answer.
TOKEN_RESPONSES = {
    "401": ("TokenError", None),
    "303": ("SignInAgain", None),
    "403": ("Forbidden", None),
}
# A browser's state-changing request from another site is refused.
CROSS_SITE = {"403": ("CrossSite", "Cross-site request refused")}
# What a link, an upload request's link or an upload's key may answer: the
# server's policies stop it, or its owner's account is disabled for now.
STOPPED = {
    "403": (
        "LinkStopped",
        "The server's policies stop this now, or the account behind it is "
        "disabled for now",
    )
}
# A sign-in with the right password to an account an administrator disabled.
DISABLED = {"403": ("AccountDisabled", "This account is disabled")}
STOPPABLE = {"link", "upload_request", "upload_key"}
UNSAFE_METHODS = {"post", "put", "patch", "delete"}
# Every operation needs a token, unless its docstring says otherwise.
TOKEN_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"queryToken": []}]


class ViewsPlugin(FlaskPlugin):
    """apispec's Flask plugin, adding what every operation shares."""

    def operation_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Summary from the docstring's first line; the shared answers."""
        view = kwargs.get("view")
        summary = (view.__doc__ or "").strip().splitlines()[0]
        for method, operation in (operations or {}).items():
            operation.setdefault("summary", summary)
            shared: dict[str, tuple[str, str | None]] = dict(SHARED_RESPONSES)
            if method in UNSAFE_METHODS:
                shared.update(CROSS_SITE)
            if is_account_view(view):  # check_for_token
                shared.update(TOKEN_RESPONSES)
            rule = getattr(view, "caller_rule", None)
            # A 403 of its own, unless the operation has one already.
            if rule in STOPPABLE:
                shared.setdefault("403", STOPPED["403"])
            if rule == "password":
                shared.setdefault("403", DISABLED["403"])
            responses = operation.setdefault("responses", {})
            for status, (name, _) in shared.items():
                responses.setdefault(status, name)


def build_spec(app: Flask) -> dict[str, Any]:
    """The whole OpenAPI document, as a dict, for ``app``'s routes."""
    spec = APISpec(
        title="Lockbox",
        version="1.0",
        openapi_version="3.1.0",
        plugins=[ViewsPlugin(), MarshmallowPlugin()],
        info={"description": "Sign in, get a JSON Web Token, keep your files."},
        security=TOKEN_SECURITY,
    )
    spec.components.security_scheme("basic", {"type": "http", "scheme": "basic"})
    spec.components.security_scheme(
        "bearer",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT, or a personal access token (lbx_...)",
        },
    )
    spec.components.security_scheme(
        "queryToken", {"type": "apiKey", "in": "query", "name": "token"}
    )
    spec.components.security_scheme(
        "metricsToken",
        {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN"},
    )
    spec.components.security_scheme(
        "sharePassword",
        {
            "type": "http",
            "scheme": "basic",
            "description": "A share link's password, with any username",
        },
    )
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.parameter(
        "FileId",
        "path",
        {
            "name": "file_id",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT_ID},
        },
    )
    for name, path_name in [
        ("ShareId", "share_id"),
        ("TokenId", "token_id"),
        ("WebhookId", "webhook_id"),
        ("UserId", "user_id"),
    ]:
        spec.components.parameter(
            name,
            "path",
            {
                "name": path_name,
                "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT_ID},
            },
        )
    spec.components.security_scheme(
        "requestPassword",
        {
            "type": "http",
            "scheme": "basic",
            "description": "An upload request's password, with any username",
        },
    )
    spec.components.parameter(
        "RequestLink",
        "path",
        {
            "name": "link",
            "required": True,
            "schema": {"type": "string"},
            "description": "The upload request's token, from its url",
        },
    )
    spec.components.parameter(
        "RequestId",
        "path",
        {
            "name": "request_id",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT_ID},
        },
    )
    spec.components.parameter(
        "InvitationSecret",
        "path",
        {
            "name": "secret",
            "required": True,
            "schema": {"type": "string"},
            "description": "The invitation's secret, from its link",
        },
    )
    spec.components.parameter(
        "Link",
        "path",
        {
            "name": "link",
            "required": True,
            "schema": {"type": "string"},
            "description": "The share link's token, from its url",
        },
    )
    spec.components.parameter(
        "Inline",
        "query",
        {
            "name": "inline",
            "required": False,
            "schema": {"type": "string", "enum": ["1"]},
            "description": "Show the file in a page (Content-Disposition: inline)"
            " when its type is one a page may show (images, video, audio, PDF;"
            " text of every kind as text/plain); any other file downloads",
        },
    )
    spec.components.parameter(
        "TwoFactorCode",
        "header",
        {
            "name": "X-Lockbox-OTP",
            "required": False,
            "schema": {"type": "string"},
            "description": "For an account with two-factor sign-in: the code"
            " its authenticator app shows, or a recovery code (ignored for an"
            " account without one)",
        },
    )
    spec.components.parameter(
        "Claim",
        "query",
        {
            "name": "claim",
            "required": False,
            "schema": {"type": "string"},
            "description": "The claim a counted download of a share link handed"
            " out (also sent as the cookie lockbox_claim); its holder fetches the"
            " link's files again without counting",
        },
    )
    for name, parameter in TUS_PARAMETERS.items():
        spec.components.parameter(name, "header", parameter)
    spec.components.parameter(
        "UploadKey",
        "path",
        {
            "name": "key",
            "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{32}$"},
            "description": "The upload's key, from the Location of its creation",
        },
    )
    named = {**RESPONSES}
    for name, description in [
        *SHARED_RESPONSES.values(),
        *CROSS_SITE.values(),
        *STOPPED.values(),
        *DISABLED.values(),
    ]:
        named[name] = description
    for name, description in named.items():
        response: dict[str, Any] = {"description": description}
        if name not in ("SignInAgain", "BackToThePage"):
            response["content"] = ERROR
        spec.components.response(name, response)
    for endpoint, view in sorted(app.view_functions.items()):
        if endpoint != "static":
            spec.path(view=view, app=app)
    document = spec.to_dict()
    _describe_settings(document, app.config)
    return document


def _describe_settings(document: dict[str, Any], config: Config) -> None:
    """Limits that are this server's settings, in the schemas that they bound."""
    schemas = document["components"]["schemas"]
    for name in ("ShareRequest", "SeveralFilesRequest", "FileRequestCreate"):
        expiry = schemas[name]["properties"]["expires_in"]
        expiry["maximum"] = config["SHARE_MAX_SECONDS"]
    request_bytes = schemas["FileRequestCreate"]["properties"]["max_bytes"]
    request_bytes["maximum"] = config["REQUEST_MAX_BYTES"]
    if not config["PAT_ALLOW_NO_EXPIRY"]:
        schemas["AccessTokenRequest"]["properties"]["expires_in"]["type"] = "integer"


@bp.get("/openapi.json")
@caller.nobody
def openapi_document() -> Response:
    """This description (OpenAPI 3.1).
    ---
    get:
      security: []
      responses:
        200:
          description: The OpenAPI 3.1 document
          content:
            application/json: {}
    """
    if "openapi" not in current_app.extensions:
        current_app.extensions["openapi"] = build_spec(current_app)
    return jsonify(current_app.extensions["openapi"])
