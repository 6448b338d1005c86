"""The OpenAPI 3.1 description of the API, served at ``/openapi.json``.

Schemas come from the marshmallow schemas in models.py; the paths are written
here, next to each other, and a test checks them against the app's routes.
"""

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify

from files import MAX_FILE_ID
from models import (
    LogoutQuerySchema,
    PageQuerySchema,
    RefreshBodySchema,
    StoredFileSchema,
    UploadFormSchema,
)

bp = Blueprint("openapi", __name__)

TOKEN_SECURITY = [{"bearer": []}, {"queryToken": []}]
ID_PARAMETER = {
    "name": "file_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_FILE_ID},
}


def _json(schema_ref: str, description: str) -> dict:
    """A JSON response with a component schema."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": schema_ref}}},
    }


def _error(description: str) -> dict:
    """The one error shape."""
    return _json("#/components/schemas/Error", description)


# Answers any operation can get, from the app or from the layers in front of it
# (gunicorn, nginx), all in the one error shape: described once, referred to
# by every operation that does not describe the status itself.
SHARED_RESPONSES = {
    "400": ("BadRequest", "A request the server could not parse"),
    "413": ("TooLarge", "The request body is over a limit"),
    "414": ("UriTooLong", "The request line is over the server's limit"),
    "429": ("TooManyRequests", "Too many requests; wait for Retry-After"),
    "431": ("HeadersTooLarge", "The request headers are over the server's limit"),
    "502": ("BadGateway", "The proxy in front got no answer from the app"),
    "503": ("Unavailable", "Database unavailable or busy; retry after Retry-After"),
    "504": ("GatewayTimeout", "The proxy in front timed out waiting for the app"),
}
# Browsers' state-changing requests made from another site are refused.
CROSS_SITE = {"403": ("CrossSite", "Cross-site request refused")}
UNSAFE_METHODS = {"post", "put", "patch", "delete"}

TOKEN_ERRORS = {"401": _error("Token missing, invalid, expired or revoked")}
NOT_FOUND = {"404": _error("No such file of yours")}
TOKEN_PAIR = _json("#/components/schemas/TokenPair", "Access and refresh tokens")

PATHS = {
    "/login": {
        "get": {
            "summary": "Exchange HTTP Basic credentials for tokens",
            "security": [{"basic": []}],
            "responses": {
                "200": TOKEN_PAIR,
                "401": _error("Unable to verify"),
                "429": _error("Too many failed sign-ins"),
            },
        },
        "post": {
            "summary": "Sign in with a username and password",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Credentials"}
                    },
                    "application/x-www-form-urlencoded": {
                        "schema": {"$ref": "#/components/schemas/Credentials"}
                    },
                },
            },
            "responses": {
                "200": TOKEN_PAIR,
                "400": _error("The body is not a JSON object"),
                "401": _error("Unable to verify"),
                "429": _error("Too many failed sign-ins"),
            },
        },
    },
    "/logout": {
        "post": {
            "summary": "Revoke the token (everywhere=1: all the user's tokens)",
            "security": TOKEN_SECURITY,
            "parameters": [{"in": "query", "schema": LogoutQuerySchema}],
            "responses": {
                "204": {"description": "Signed out"},
                "400": _error("everywhere is not a yes or no"),
                **TOKEN_ERRORS,
            },
        }
    },
    "/refresh": {
        "post": {
            "summary": "Trade a refresh token for a new pair",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {"schema": RefreshBodySchema},
                    "application/x-www-form-urlencoded": {"schema": RefreshBodySchema},
                },
            },
            "responses": {
                "200": TOKEN_PAIR,
                "400": _error("The body is not an object with a string"),
                **TOKEN_ERRORS,
            },
        }
    },
    "/": {
        "get": {
            "summary": "The upload page and the user's files (HTML)",
            "security": TOKEN_SECURITY,
            "responses": {
                "200": {"description": "The page", "content": {"text/html": {}}},
                **TOKEN_ERRORS,
            },
        }
    },
    "/upload": {
        "post": {
            "summary": "Upload one file (multipart/form-data, field inputFile)",
            "security": TOKEN_SECURITY,
            "parameters": [
                {
                    "name": "X-Content-SHA256",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {"$ref": "#/components/schemas/UploadForm"}
                    }
                },
            },
            "responses": {
                "201": _json("#/components/schemas/Uploaded", "Stored"),
                "400": _error("Bad form"),
                **TOKEN_ERRORS,
                "413": _error("Body over MAX_CONTENT_LENGTH"),
                "415": _error("Not multipart/form-data"),
                "503": _error("Database unavailable"),
            },
        }
    },
    "/files": {
        "get": {
            "summary": "The user's files, newest first",
            "security": TOKEN_SECURITY,
            "parameters": [{"in": "query", "schema": PageQuerySchema}],
            "responses": {
                "200": _json("#/components/schemas/FilePage", "A page of files"),
                "400": _error("Bad page or per_page"),
                **TOKEN_ERRORS,
            },
        }
    },
    "/files/{file_id}": {
        "parameters": [ID_PARAMETER],
        "get": {
            "summary": "One file's metadata",
            "security": TOKEN_SECURITY,
            "responses": {
                "200": _json("#/components/schemas/StoredFile", "The metadata"),
                **TOKEN_ERRORS,
                **NOT_FOUND,
            },
        },
        "delete": {
            "summary": "Delete a file and its chunks",
            "security": TOKEN_SECURITY,
            "responses": {
                "204": {"description": "Deleted"},
                **TOKEN_ERRORS,
                **NOT_FOUND,
            },
        },
    },
    "/files/{file_id}/delete": {
        "parameters": [ID_PARAMETER],
        "post": {
            "summary": "Delete from the page (asks first unless confirm=yes)",
            "security": TOKEN_SECURITY,
            "responses": {
                "200": {"description": "Asks to confirm", "content": {"text/html": {}}},
                "303": {"description": "Deleted; back to the page"},
                **TOKEN_ERRORS,
                **NOT_FOUND,
            },
        },
    },
    "/files/{file_id}/download": {
        "parameters": [ID_PARAMETER],
        "get": {
            "summary": "The file's bytes; Range, If-Range and If-None-Match honoured",
            "security": TOKEN_SECURITY,
            "responses": {
                "200": {
                    "description": "The whole file, in its stored content type",
                    "content": {"*/*": {"schema": {"type": "string"}}},
                },
                "206": {"description": "One byte range"},
                "304": {"description": "Not modified"},
                **TOKEN_ERRORS,
                **NOT_FOUND,
                "416": _error("Range not satisfiable"),
            },
        },
    },
    "/livez": {
        "get": {
            "summary": "Liveness: the process answers (no database check)",
            "security": [],
            "responses": {"200": _json("#/components/schemas/Liveness", "Alive")},
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness and database reachability",
            "security": [],
            "responses": {
                "200": _json("#/components/schemas/Health", "Healthy"),
                "503": _json("#/components/schemas/Health", "Database unavailable"),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This description",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1 document"}},
        }
    },
}


def build_spec() -> dict:
    """The whole OpenAPI document as a dict."""
    marshmallow = MarshmallowPlugin()
    spec = APISpec(
        title="Lockbox",
        version="1.0",
        openapi_version="3.1.0",
        plugins=[marshmallow],
        info={"description": "Sign in, get a JSON Web Token, keep your files."},
    )
    spec.components.security_scheme("basic", {"type": "http", "scheme": "basic"})
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    spec.components.security_scheme(
        "queryToken", {"type": "apiKey", "in": "query", "name": "token"}
    )
    spec.components.schema("StoredFile", schema=StoredFileSchema)
    spec.components.schema(
        "Error",
        {
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"type": "string"}},
        },
    )
    # The upload's answer is the metadata and a message; its form is the text
    # fields of UploadFormSchema and the file.
    uploaded = marshmallow.converter.schema2jsonschema(StoredFileSchema)
    uploaded["properties"]["message"] = {"type": "string"}
    uploaded["required"] = [*uploaded.get("required", []), "message"]
    spec.components.schema("Uploaded", uploaded)
    form = marshmallow.converter.schema2jsonschema(UploadFormSchema)
    form["properties"]["inputFile"] = {"type": "string", "format": "binary"}
    form["properties"]["sha256"] = {**form["properties"]["sha256"], "type": "string"}
    del form["properties"]["sha256"]["default"]
    form["required"] = ["inputFile"]
    spec.components.schema("UploadForm", form)
    spec.components.schema(
        "FilePage",
        {
            "type": "object",
            "required": ["items", "page", "per_page", "total"],
            "properties": {
                "items": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/StoredFile"},
                },
                "page": {"type": "integer"},
                "per_page": {"type": "integer"},
                "total": {"type": "integer"},
            },
        },
    )
    spec.components.schema(
        "TokenPair",
        {
            "type": "object",
            "required": ["token", "token_type", "expires_in", "refresh_token"],
            "properties": {
                "token": {"type": "string"},
                "token_type": {"type": "string", "enum": ["Bearer"]},
                "expires_in": {"type": "integer"},
                "refresh_token": {"type": "string"},
                "refresh_expires_in": {"type": "integer"},
            },
        },
    )
    spec.components.schema(
        "Credentials",
        {
            "type": "object",
            "required": ["username", "password"],
            "properties": {
                "username": {"type": "string"},
                "password": {"type": "string"},
            },
        },
    )
    spec.components.schema(
        "Liveness",
        {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
        },
    )
    spec.components.schema(
        "Health",
        {
            "type": "object",
            "required": ["status", "database"],
            "properties": {
                "status": {"type": "string"},
                "database": {"type": "string"},
                "message": {"type": "string"},
            },
        },
    )
    for name, description in [*SHARED_RESPONSES.values(), *CROSS_SITE.values()]:
        spec.components.response(name, _error(description))
    for path, item in PATHS.items():
        operations = {}
        for method, operation in item.items():
            if method == "parameters":
                continue
            shared = {**SHARED_RESPONSES}
            if method in UNSAFE_METHODS:
                shared.update(CROSS_SITE)
            responses = {**operation["responses"]}
            for status, (name, _) in shared.items():
                responses.setdefault(status, {"$ref": f"#/components/responses/{name}"})
            operations[method] = {**operation, "responses": responses}
        spec.path(path=path, operations=operations, parameters=item.get("parameters"))
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI description of this API."""
    if "openapi" not in current_app.extensions:
        current_app.extensions["openapi"] = build_spec()
    return jsonify(current_app.extensions["openapi"])
