"""The shapes of requests and responses, declared once as marshmallow schemas.

Each is used both ways: to load and validate what a request carries, or to
produce what a view answers, and by openapi.py to describe it, so that the
description cannot drift from what the app does (tests/conftest.py checks
every JSON answer of the test suite against it).
"""

from datetime import UTC
from typing import Any, Protocol

from flask_marshmallow import Schema
from flask_marshmallow.sqla import SQLAlchemySchema
from marshmallow import EXCLUDE, ValidationError, fields, validate, validates_schema
from marshmallow_sqlalchemy import auto_field
from sqlalchemy import Row

from config import PAT_MAX_SECONDS
from models import StoredFile

# What a personal access token may be allowed to do (authentication.py checks).
SCOPES = ("files:read", "files:write", "shares:write", "admin")
# The scope of the admin area's routes: an administrator's tokens only.
ADMIN_SCOPE = "admin"


class StoredFileSchema(SQLAlchemySchema):
    """A file's public metadata, as every API response shows it."""

    class Meta:
        model = StoredFile

    id = auto_field(dump_only=True)
    filename = auto_field(dump_only=True)
    description = auto_field(dump_only=True)
    content_type = auto_field(dump_only=True)
    size = auto_field(dump_only=True)
    sha256 = auto_field(dump_only=True)
    created_at = auto_field(dump_only=True)
    expires_at = auto_field(
        dump_only=True,
        metadata={"description": "When it stops being kept; null: until deleted"},
    )


class AccountSchema(Schema):
    """``GET /account``: storage used and the limits that apply."""

    username = fields.String(dump_only=True)
    role = fields.String(
        dump_only=True,
        metadata={"description": "user or admin", "enum": ["user", "admin"]},
    )
    has_password = fields.Boolean(dump_only=True)
    single_sign_on = fields.Boolean(
        dump_only=True,
        metadata={"description": "Whether the account signs in through the provider"},
    )
    two_factor = fields.Boolean(
        dump_only=True,
        metadata={"description": "Whether password sign-ins need a second factor"},
    )
    used_bytes = fields.Integer(dump_only=True)
    quota_bytes = fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "null: no limit"}
    )
    max_file_size = fields.Integer(dump_only=True)
    file_lifetime_seconds = fields.Integer(
        dump_only=True,
        allow_none=True,
        metadata={"description": "How long new files are kept; null: until deleted"},
    )
    max_file_seconds = fields.Integer(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "The longest this server keeps a file; null: no limit"
        },
    )


class RequestSchema(Schema):
    """What a request may carry: fields it does not name are ignored, not refused
    (and the OpenAPI description, made from these schemas, says so)."""

    class Meta:
        unknown = EXCLUDE


# A file's description: StoredFile.description's length.
DESCRIPTION_MAX = 200
SHA256_ERROR = "sha256 must be 64 hexadecimal characters"
LIFETIME_ERROR = 'a lifetime is seconds, a duration such as 12h or 7d, or "never"'


class Lifetime(fields.String):
    """A lifetime (policies.lifetime_seconds reads it): text, or a whole
    number of seconds as JSON gives it."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class UploadFormSchema(RequestSchema):
    """The text fields an upload form may carry."""

    # Length and an unanchored pattern rather than ``\A...\Z``: the pattern also
    # goes into /openapi.json, whose regular expressions are ECMAScript's.
    # No default: an absent digest is simply not in the loaded form.
    sha256 = fields.String(
        validate=[
            validate.Length(equal=64, error=SHA256_ERROR),
            validate.Regexp("[0-9a-fA-F]{64}", error=SHA256_ERROR),
        ],
    )
    description = fields.String(
        load_default="",
        validate=validate.Length(
            max=DESCRIPTION_MAX, error="Description is longer than {max} characters"
        ),
    )
    expires_in = Lifetime(
        validate=validate.Length(max=32, error=LIFETIME_ERROR),
        metadata={
            "description": "How long to keep the file: seconds, a duration such as "
            '12h or 7d, or "never"; absent: the account\'s default'
        },
    )


class LifetimeSchema(RequestSchema):
    """A lifetime for the account's new files (``POST /account/file-lifetime``)."""

    lifetime = Lifetime(
        required=True,
        validate=validate.Length(min=1, max=32, error=LIFETIME_ERROR),
        metadata={"description": 'Seconds, a duration such as 12h or 7d, or "never"'},
    )


class FileChangeSchema(RequestSchema):
    """A change to a file (``PATCH /files/<id>``): its expiry, as a time or as
    a lifetime from now; one of the two."""

    expires_at = fields.AwareDateTime(
        allow_none=True,
        default_timezone=UTC,
        metadata={"description": "When to stop keeping it; null: until deleted"},
    )
    expires_in = Lifetime(
        validate=validate.Length(min=1, max=32, error=LIFETIME_ERROR),
        metadata={
            "description": 'From now: seconds, a duration such as 12h or 7d, or "never"'
        },
    )

    @validates_schema
    def one_of_the_two(self, data: dict, **kwargs: Any) -> None:
        """Exactly one way to say the expiry."""
        if ("expires_at" in data) == ("expires_in" in data):
            raise ValidationError("Send expires_at or expires_in (one of the two)")


class PageQuerySchema(RequestSchema):
    """``?page=`` and ``?per_page=`` of a listing."""

    page = fields.Integer(
        load_default=1,
        validate=validate.Range(min=1, max=1_000_000),
        error_messages={"invalid": "page must be a whole number from 1"},
    )
    per_page = fields.Integer(
        load_default=50,
        validate=validate.Range(min=1, max=200),
        error_messages={"invalid": "per_page must be a whole number from 1 to 200"},
    )


# The orders a file listing comes in: by upload time, name or size.
FILE_SORTS = ("date", "name", "size")


class FileListQuerySchema(PageQuerySchema):
    """A page of the caller's files: which page, which files, in what order."""

    q = fields.String(
        load_default="",
        validate=validate.Length(max=255, error="q is at most {max} characters"),
        metadata={"description": "Only files whose name holds this (any case)"},
    )
    sort = fields.String(
        load_default="date",
        validate=validate.OneOf(FILE_SORTS, error="sort must be date, name or size"),
    )
    order = fields.String(
        load_default=None,
        validate=validate.OneOf(("asc", "desc"), error="order must be asc or desc"),
        metadata={"description": "Default: newest and largest first, names A-Z"},
    )


class LogoutQuerySchema(RequestSchema):
    """``POST /logout?everywhere=1``: sign out of every device."""

    everywhere = fields.Boolean(
        load_default=False,
        error_messages={"invalid": "everywhere must be 1 or 0 (true or false)"},
    )


class RefreshBodySchema(RequestSchema):
    """The body ``POST /refresh`` may carry instead of an Authorization header."""

    refresh_token = fields.String(
        validate=validate.Length(min=1, error="refresh_token is empty"),
        error_messages={"invalid": "refresh_token must be a string"},
    )


class UploadRequestSchema(UploadFormSchema):
    """What POST /upload carries: the file, and the text fields."""

    inputFile = fields.Raw(
        required=True, metadata={"type": "string", "format": "binary"}
    )


class CredentialsSchema(RequestSchema):
    """The body of ``POST /login``: the sign-in form's fields, or JSON."""

    username = fields.String(
        metadata={"description": "Needed, with the password, unless a ticket comes"}
    )
    password = fields.String()
    otp = fields.String(
        metadata={
            "description": "The second factor's code (or a recovery code), for "
            "an account with two-factor sign-in; X-Lockbox-OTP works too"
        }
    )
    ticket = fields.String(
        metadata={
            "description": "The sign-in page's second step: the ticket its "
            "first step gave for the right password, sent with otp"
        }
    )
    remember = fields.String(
        metadata={
            "description": "The sign-in form's 'keep me signed in': any value "
            "keeps the page session's renewal cookie beyond the browser session"
        }
    )
    next = fields.String(
        metadata={"description": "The page (a path on this site) to go on to"}
    )


class RenewQuerySchema(RequestSchema):
    """``GET /renew``: the page to go back to, and the token it had."""

    next = fields.String(
        metadata={"description": "The page (a path on this site) to go back to"}
    )
    token = fields.String(
        metadata={"description": "The page's own token, expired or not: whose page"}
    )


class SsoStartQuerySchema(RequestSchema):
    """``GET /sso/login``: where to go once signed in."""

    next = fields.String(
        metadata={"description": "The page (a path on this site) to go on to"}
    )


class SsoCallbackQuerySchema(RequestSchema):
    """``GET /sso/callback``: what the identity provider sends back."""

    code = fields.String()
    state = fields.String()
    error = fields.String()
    error_description = fields.String()
    iss = fields.String()


class TwoFactorCodeSchema(RequestSchema):
    """A second factor's code: its first, to turn it on."""

    code = fields.String(
        required=True,
        metadata={"description": "The six digits the authenticator app shows"},
    )


class PasswordCheckSchema(RequestSchema):
    """A change to how the account signs in: its password again, and (when
    two-factor sign-in is on) a code, so that a stolen session alone cannot
    make it."""

    password = fields.String(required=True)
    code = fields.String(
        metadata={
            "description": "With two-factor sign-in on: a code, or a recovery code"
        }
    )


class TwoFactorOffSchema(RequestSchema):
    """Turning the second factor off: the password and a code."""

    password = fields.String(required=True)
    code = fields.String(
        required=True,
        metadata={"description": "A code from the app, or a recovery code"},
    )


class TwoFactorSetupSchema(Schema):
    """A second factor being set up: the secret for the authenticator app."""

    secret = fields.String(dump_only=True, metadata={"description": "Base32"})
    otpauth_uri = fields.String(dump_only=True)


class RecoveryCodesSchema(Schema):
    """Single-use codes that stand in for the app's code: shown this once."""

    recovery_codes = fields.List(fields.String(), dump_only=True)


class ErrorSchema(Schema):
    """The one error shape, whatever the status and whichever layer answers."""

    message = fields.String(required=True)


class TokenPairSchema(Schema):
    """What signing in and refreshing answer: an access and a refresh token."""

    token = fields.String(required=True)
    token_type = fields.String(required=True, validate=validate.OneOf(["Bearer"]))
    expires_in = fields.Integer(required=True)
    refresh_token = fields.String(required=True)
    refresh_expires_in = fields.Integer(required=True)


class UploadedSchema(StoredFileSchema):
    """The answer to an upload: the file's metadata and a message."""

    message = fields.Function(
        lambda stored_file: f"file {stored_file.filename} uploaded successfully",
        required=True,
        metadata={"type": "string"},
    )


class RowPage(Protocol):
    """A page of listed rows (files.FilePage)."""

    @property
    def items(self) -> list[Row[Any]]:
        """The page's rows, in LISTED_FIELDS order."""

    @property
    def page(self) -> int:
        """The page's number, from 1."""

    @property
    def per_page(self) -> int:
        """The most rows a page holds."""

    @property
    def total(self) -> int:
        """The rows of every page together."""


class FilePageSchema(Schema):
    """One page of a listing: the files, and where the page stands."""

    items = fields.List(fields.Nested(StoredFileSchema), required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True)

    def dump_page(self, page: "RowPage") -> dict[str, Any]:
        """A page of listed rows (files.FilePage), as ``dump`` would give it.

        Built directly: marshmallow's work per field was half the cost of a
        listing. Each row holds the file's listed fields in LISTED_FIELDS
        order; a test checks the result equals the schema's own ``dump``.
        """
        items = []
        for row in page.items:
            item = dict(zip(LISTED_FIELDS, row, strict=False))
            item["created_at"] = item["created_at"].isoformat()
            if item["expires_at"] is not None:
                item["expires_at"] = item["expires_at"].isoformat()
            items.append(item)
        return {
            "items": items,
            "page": page.page,
            "per_page": page.per_page,
            "total": page.total,
        }


class ShareRequestSchema(RequestSchema):
    """``POST /files/<id>/shares``: how long the link lives and what guards it."""

    expires_in = fields.Integer(
        validate=validate.Range(min=60, error="expires_in must be at least {min}"),
        metadata={"description": "Seconds; default 7 days, at most SHARE_MAX_SECONDS"},
        error_messages={"invalid": "expires_in must be a whole number of seconds"},
    )
    password = fields.String(
        validate=validate.Length(
            min=8, max=256, error="password must be 8 to 256 characters"
        ),
        error_messages={"invalid": "password must be a string"},
    )
    max_downloads = fields.Integer(
        validate=validate.Range(
            min=1, max=1_000_000, error="max_downloads must be from 1 to 1000000"
        ),
        error_messages={"invalid": "max_downloads must be a whole number"},
    )


# The files one link may carry: a bound on its page, its zip's directory and
# what each visit loads.
MAX_FILES_PER_LINK = 500


class SeveralFilesRequestSchema(ShareRequestSchema):
    """``POST /shares``: the files of a link to several, and its settings."""

    file_ids = fields.List(
        fields.Integer(
            strict=False, error_messages={"invalid": "file ids are whole numbers"}
        ),
        required=True,
        validate=validate.Length(
            min=1,
            max=MAX_FILES_PER_LINK,
            error=f"file_ids must list 1 to {MAX_FILES_PER_LINK} files",
        ),
        error_messages={
            "required": "file_ids is required",
            "invalid": "file_ids must be a list of file ids",
        },
        metadata={"description": "Its files, in this order"},
    )


class SeveralFilesQuerySchema(RequestSchema):
    """``GET /shares?file_ids=``: the files the page's new link starts with
    (a page of the file list holds at most 200)."""

    file_ids = fields.List(
        fields.Integer(
            strict=False, error_messages={"invalid": "file ids are whole numbers"}
        ),
        validate=validate.Length(max=200, error="file_ids may list at most 200 files"),
        load_default=list,
    )


# ".pdf, .jpg, image/*, application/zip": endings and media types, a comma
# between (request_links.takes says how they match).
_ALLOWED_TYPE = (
    r"(\.[A-Za-z0-9]{1,16}|[a-z0-9!#$&^_.+-]{1,64}/(\*|[a-z0-9!#$&^_.+-]{1,64}))"
)
ALLOWED_TYPES_RE = rf"^(?=.{{1,255}}$)\s*{_ALLOWED_TYPE}(\s*,\s*{_ALLOWED_TYPE})*\s*$"


class FileRequestCreateSchema(ShareRequestSchema):
    """``POST /requests``: what the guest is told, how long the request
    lives, what guards it and what it takes."""

    class Meta:
        exclude = ("max_downloads",)

    title = fields.String(
        required=True,
        validate=validate.Length(
            min=1, max=120, error="title must be 1 to 120 characters"
        ),
        error_messages={
            "required": "title is required",
            "invalid": "title must be a string",
        },
    )
    note = fields.String(
        validate=validate.Length(
            max=1000, error="note must be at most 1000 characters"
        ),
        error_messages={"invalid": "note must be a string"},
    )
    max_files = fields.Integer(
        validate=validate.Range(
            min=1, max=100_000, error="max_files must be from 1 to 100000"
        ),
        error_messages={"invalid": "max_files must be a whole number"},
    )
    max_bytes = fields.Integer(
        validate=validate.Range(min=1, error="max_bytes must be at least 1"),
        metadata={"description": "Bytes in all; default and most REQUEST_MAX_BYTES"},
        error_messages={"invalid": "max_bytes must be a whole number of bytes"},
    )
    allowed_types = fields.String(
        validate=validate.Regexp(
            ALLOWED_TYPES_RE,
            error="allowed_types must be file endings (.pdf) or media types "
            "(image/png, image/*), comma-separated, 255 characters at most",
        ),
        metadata={"description": "The kinds of file it takes: '.pdf, image/*'"},
        error_messages={"invalid": "allowed_types must be a string"},
    )


REQUEST_STATUSES = [
    "active",
    "closed",
    "expired",
    "revoked",
    "full",
    "disabled",
    "stopped",
]


class ReceivedFileSchema(Schema):
    """A file an upload request received."""

    id = fields.Integer(required=True)
    filename = fields.String(required=True)
    size = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)


class FileRequestSchema(Schema):
    """An upload request, as its owner sees it."""

    id = fields.Integer(required=True)
    url = fields.String(required=True, metadata={"description": "The link itself"})
    title = fields.String(required=True)
    note = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(REQUEST_STATUSES))
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)
    has_password = fields.Boolean(required=True)
    max_files = fields.Integer(required=True, allow_none=True)
    max_bytes = fields.Integer(required=True)
    allowed_types = fields.String(required=True, allow_none=True)
    files = fields.List(
        fields.Nested(ReceivedFileSchema),
        required=True,
        metadata={"description": "The files that arrived, newest first"},
    )


class FileRequestListSchema(Schema):
    """The caller's upload requests, newest first."""

    items = fields.List(fields.Nested(FileRequestSchema), required=True)


class GuestRequestSchema(Schema):
    """What an upload request shows whoever holds its link (and password)."""

    title = fields.String(required=True)
    note = fields.String(required=True)
    owner = fields.String(required=True)
    expires_at = fields.DateTime(required=True)
    files_left = fields.Integer(required=True, allow_none=True)
    bytes_left = fields.Integer(required=True)
    allowed_types = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The kinds of file it takes; null: any"},
    )
    upload_url = fields.String(
        required=True, metadata={"description": "Where tus clients create uploads"}
    )


class AccessEventSchema(Schema):
    """One request that moved bytes through a link or an upload request."""

    at = fields.DateTime(required=True)
    address = fields.String(required=True, metadata={"description": "The client's"})
    user_agent = fields.String(required=True)
    action = fields.String(
        required=True,
        validate=validate.OneOf(["download", "resume", "preview", "upload"]),
    )
    what = fields.String(required=True, metadata={"description": "The file's name"})
    bytes = fields.Integer(required=True)
    completed = fields.Boolean(
        required=True,
        metadata={"description": "All it meant to move arrived"},
    )


class AccessEventListSchema(Schema):
    """An access log, newest first (the newest 200)."""

    items = fields.List(fields.Nested(AccessEventSchema), required=True)


SHARE_STATUSES = [
    "active",
    "expired",
    "revoked",
    "used_up",
    "emptied",
    "disabled",
    "stopped",
]


class ShareSchema(Schema):
    """A share link, as its owner sees it."""

    id = fields.Integer(required=True)
    file_id = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "Its file; null for a link to several files"},
    )
    file_ids = fields.List(
        fields.Integer(),
        required=True,
        metadata={"description": "Its files, in their order (deleted ones drop out)"},
    )
    url = fields.String(required=True, metadata={"description": "The link itself"})
    status = fields.String(required=True, validate=validate.OneOf(SHARE_STATUSES))
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)
    max_downloads = fields.Integer(required=True, allow_none=True)
    downloads = fields.Integer(required=True)
    last_download_at = fields.DateTime(required=True, allow_none=True)
    has_password = fields.Boolean(required=True)


class ShareListSchema(Schema):
    """A file's share links, newest first."""

    items = fields.List(fields.Nested(ShareSchema), required=True)


class SharedFileSchema(Schema):
    """What a share link shows anyone who has it (and its password)."""

    filename = fields.String(required=True)
    size = fields.Integer(required=True)
    content_type = fields.String(required=True)
    description = fields.String(required=True)
    sha256 = fields.String(required=True)
    owner = fields.String(required=True, metadata={"description": "A username"})
    expires_at = fields.DateTime(required=True)
    downloads_left = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null: no limit"}
    )
    download_url = fields.String(required=True)


class SharedFileItemSchema(Schema):
    """One file of a link to several."""

    position = fields.Integer(
        required=True, metadata={"description": "Its place in the link, from 1"}
    )
    filename = fields.String(required=True)
    size = fields.Integer(required=True)
    content_type = fields.String(required=True)
    description = fields.String(required=True)
    sha256 = fields.String(required=True)
    download_url = fields.String(required=True)


class SharedFilesSchema(Schema):
    """What a link to several files shows anyone who has it (and its password)."""

    owner = fields.String(required=True, metadata={"description": "A username"})
    expires_at = fields.DateTime(required=True)
    downloads_left = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null: no limit"}
    )
    download_url = fields.String(
        required=True, metadata={"description": "All the files as one zip"}
    )
    files = fields.List(fields.Nested(SharedFileItemSchema), required=True)


class AccessTokenRequestSchema(RequestSchema):
    """``POST /tokens``: a personal access token's name, scopes and lifetime."""

    name = fields.String(
        required=True,
        validate=validate.Length(
            min=1, max=80, error="name must be 1 to 80 characters"
        ),
        error_messages={"invalid": "name must be a string"},
    )
    scopes = fields.List(
        fields.String(validate=validate.OneOf(SCOPES, error="unknown scope {input}")),
        required=True,
        validate=validate.Length(min=1, error="give at least one scope"),
        metadata={"description": "Any of " + ", ".join(SCOPES)},
    )
    expires_in = fields.Integer(
        allow_none=True,
        validate=validate.Range(
            min=60, max=PAT_MAX_SECONDS, error="expires_in must be from {min} to {max}"
        ),
        metadata={
            "description": "Seconds; default 90 days, at most a year; null: never "
            "(only where PAT_ALLOW_NO_EXPIRY is set)"
        },
        error_messages={"invalid": "expires_in must be a whole number of seconds"},
    )


class AccessTokenSchema(Schema):
    """A personal access token as listed: never the token itself."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    scopes = fields.List(fields.String(), required=True, attribute="scope_list")
    prefix = fields.String(
        required=True, metadata={"description": "The token's first characters"}
    )
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True, allow_none=True)
    last_used_at = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "To the minute"}
    )


class NewAccessTokenSchema(AccessTokenSchema):
    """A personal access token just made: the one time the token is shown."""

    token = fields.String(required=True)


class AccessTokenListSchema(Schema):
    """The caller's personal access tokens, newest first."""

    items = fields.List(fields.Nested(AccessTokenSchema), required=True)


# What a webhook may hear (notifications.py sends them; docs/api.md shows
# each one's body).
EVENT_TYPES = [
    "link.downloaded",
    "link.expired_unused",
    "request.received",
    "request.filled",
    "request.closed",
    "request.expired_unused",
]


class WebhookRequestSchema(RequestSchema):
    """``POST /webhooks``: where to send, and what."""

    url = fields.String(
        required=True,
        validate=validate.Length(
            min=1, max=2000, error="url must be 1 to 2000 characters"
        ),
        error_messages={
            "required": "url is required",
            "invalid": "url must be a string",
        },
        metadata={
            "description": "https:// and a public host (or one in WEBHOOK_ALLOW_HOSTS)"
        },
    )
    events = fields.List(
        fields.String(
            validate=validate.OneOf(EVENT_TYPES, error="unknown event type {input}")
        ),
        required=True,
        validate=validate.Length(min=1, error="events must name at least one event"),
        error_messages={
            "required": "events is required",
            "invalid": "events must be a list of event types",
        },
    )
    enabled = fields.Boolean(
        error_messages={"invalid": "enabled must be true or false"}
    )


class EmailSettingsRequestSchema(RequestSchema):
    """``PUT /account/email``: where to be told, and of what."""

    email = fields.Email(
        required=True,
        allow_none=True,
        validate=validate.Length(max=254, error="email must be at most 254 characters"),
        error_messages={
            "required": "email is required (null to stop e-mail)",
            "invalid": "email must be an e-mail address",
        },
    )
    events = fields.List(
        fields.String(
            validate=validate.OneOf(EVENT_TYPES, error="unknown event type {input}")
        ),
        load_default=list,
        error_messages={"invalid": "events must be a list of event types"},
    )


class EmailSettingsSchema(Schema):
    """Where the account is told by e-mail, and of what."""

    email = fields.String(required=True, allow_none=True)
    confirmed = fields.Boolean(
        required=True,
        metadata={"description": "Nothing but the confirmation goes out before"},
    )
    events = fields.List(fields.String(), required=True)
    sending = fields.Boolean(
        required=True, metadata={"description": "Whether this server sends e-mail"}
    )


class WebhookStateSchema(RequestSchema):
    """``PATCH /webhooks/<id>``: on or off."""

    enabled = fields.Boolean(
        required=True,
        error_messages={
            "required": "enabled is required",
            "invalid": "enabled must be true or false",
        },
    )


class WebhookSchema(Schema):
    """A webhook as listed: never its secret."""

    id = fields.Integer(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    enabled = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)


class NewWebhookSchema(WebhookSchema):
    """A webhook just made: the one time its signing secret is shown."""

    secret = fields.String(
        required=True,
        metadata={"description": "whsec_...: verifies webhook-signature"},
    )


class WebhookListSchema(Schema):
    """The caller's webhooks, newest first."""

    items = fields.List(fields.Nested(WebhookSchema), required=True)


class DeliverySchema(Schema):
    """One event sent, or to be sent, to a webhook."""

    id = fields.Integer(required=True)
    message_id = fields.String(
        required=True, metadata={"description": "The webhook-id header"}
    )
    event_type = fields.String(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf(["pending", "delivered", "failed"])
    )
    attempts = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    next_attempt_at = fields.DateTime(required=True)
    last_attempt_at = fields.DateTime(required=True, allow_none=True)
    last_status_code = fields.Integer(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True)
    body = fields.Dict(required=True, metadata={"description": "What is sent"})


class DeliveryListSchema(Schema):
    """A webhook's newest deliveries, newest first."""

    items = fields.List(fields.Nested(DeliverySchema), required=True)


class LivenessSchema(Schema):
    """``GET /livez``: the process answers."""

    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class HealthSchema(Schema):
    """``GET /healthz``: the process and its database."""

    status = fields.String(required=True)
    database = fields.String(required=True)
    cluster = fields.String(
        metadata={"description": "A Galera node's state, e.g. 'Primary, Synced'"}
    )
    message = fields.String()


# --- the admin area (admin.py) -------------------------------------------------

ROLE_NAMES = ("user", "admin")
USERNAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,79}$"


class AdminUserSchema(Schema):
    """An account, as an administrator sees it."""

    id = fields.Integer(required=True)
    username = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLE_NAMES))
    email = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    last_sign_in_at = fields.DateTime(required=True, allow_none=True)
    disabled = fields.Boolean(required=True)
    has_password = fields.Boolean(required=True)
    single_sign_on = fields.Boolean(required=True)
    two_factor = fields.Boolean(required=True)
    files = fields.Integer(required=True)
    used_bytes = fields.Integer(required=True)
    quota_bytes = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null: no limit"}
    )
    quota_is_default = fields.Boolean(
        required=True,
        metadata={"description": "The server's default quota applies"},
    )


class AdminUserListSchema(Schema):
    """Every account, by name."""

    items = fields.List(fields.Nested(AdminUserSchema), required=True)


class AdminUserCreateSchema(RequestSchema):
    """``POST /admin/users``: a new account, invited to set its password."""

    username = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=80, error="username must be 1 to 80 characters"),
            validate.Regexp(
                USERNAME_PATTERN,
                error="username: letters, digits and _ . @ + - "
                "(not starting with punctuation)",
            ),
        ],
    )
    email = fields.Email(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=254, error="email must be at most 254 characters"),
        error_messages={"invalid": "email must be an e-mail address"},
        metadata={"description": "Where the invitation is sent, if this server mails"},
    )
    role = fields.String(
        load_default="user",
        validate=validate.OneOf(ROLE_NAMES, error="role must be user or admin"),
    )
    quota = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=32, error="quota must be at most 32 characters"),
        metadata={
            "description": 'A size ("10 GiB", "500MB"), 0 for no limit; '
            "empty or null: the server's default"
        },
    )


class InvitationSchema(Schema):
    """An invitation (or password reset) link: shown this once."""

    url = fields.String(required=True)
    expires_at = fields.DateTime(required=True)
    emailed = fields.Boolean(
        required=True, metadata={"description": "Sent to the account's e-mail address"}
    )


class AdminUserCreatedSchema(Schema):
    """A new account, and the link that lets its person set a password."""

    user = fields.Nested(AdminUserSchema, required=True)
    invitation = fields.Nested(InvitationSchema, required=True)


class RoleSchema(RequestSchema):
    """``POST /admin/users/<id>/role``."""

    role = fields.String(
        required=True,
        validate=validate.OneOf(ROLE_NAMES, error="role must be user or admin"),
    )


class QuotaSchema(RequestSchema):
    """``POST /admin/users/<id>/quota``."""

    quota = fields.String(
        required=True,
        allow_none=True,
        validate=validate.Length(max=32, error="quota must be at most 32 characters"),
        metadata={
            "description": 'A size ("10 GiB", "500MB"), 0 for no limit; '
            'empty, null or "default": the server\'s default'
        },
    )


class NewPasswordSchema(RequestSchema):
    """A password set through an invitation link, typed twice."""

    password = fields.String(
        required=True,
        validate=validate.Length(
            min=8, max=1024, error="password must be 8 to 1024 characters"
        ),
    )
    confirm = fields.String(required=True)


class PoliciesSchema(RequestSchema):
    """The server's policies (policies.py); a change sends only what changes."""

    links_need_password = fields.Boolean(
        metadata={"description": "Every share link must have a password"}
    )
    max_link_seconds = fields.Integer(
        allow_none=True,
        validate=validate.Range(
            min=60,
            max=10 * 365 * 86400,
            error="max_link_seconds must be {min} to {max}",
        ),
        metadata={"description": "The longest a share link may last; null: no limit"},
    )
    share_links = fields.Boolean(
        metadata={"description": "Off: no link can be made, and none opens"}
    )
    upload_requests = fields.Boolean(
        metadata={"description": "Off: no upload request can be made, and none opens"}
    )
    two_factor_required = fields.Boolean(
        metadata={"description": "Accounts with a password must set up two factors"}
    )
    default_quota_bytes = fields.Integer(
        allow_none=True,
        validate=validate.Range(
            min=0, max=2**63 - 1, error="default_quota_bytes must be {min} to {max}"
        ),
        metadata={"description": "A new account's quota; null: STORAGE_QUOTA_BYTES"},
    )
    max_file_seconds = fields.Integer(
        allow_none=True,
        validate=validate.Range(
            min=60,
            max=3650 * 86400,
            error="max_file_seconds must be {min} to {max}",
        ),
        metadata={
            "description": "The longest a file may be kept from its upload; null: "
            "no limit"
        },
    )


class AuditQuerySchema(RequestSchema):
    """The audit log's filters."""

    event = fields.String(
        validate=validate.Length(max=40, error="event must be at most 40 characters"),
        metadata={"description": 'An event ("sign_in.failed") or its family ("link")'},
    )
    actor = fields.String(
        validate=validate.Length(max=80, error="actor must be at most 80 characters")
    )
    since = fields.DateTime(
        error_messages={"invalid": "since must be an ISO 8601 time"}
    )
    until = fields.DateTime(
        error_messages={"invalid": "until must be an ISO 8601 time"}
    )
    before = fields.Integer(
        validate=validate.Range(min=1, max=2**62, error="before must be a row number"),
        metadata={"description": "Rows before this one (the next page)"},
    )
    limit = fields.Integer(
        load_default=100,
        validate=validate.Range(min=1, max=1000, error="limit must be 1 to 1000"),
    )


class AuditEventSchema(Schema):
    """One row of the audit log."""

    seq = fields.Integer(required=True)
    at = fields.DateTime(required=True)
    event = fields.String(required=True)
    actor_id = fields.Integer(required=True, allow_none=True)
    actor = fields.String(required=True)
    target = fields.String(required=True)
    outcome = fields.String(required=True)
    address = fields.String(required=True)
    user_agent = fields.String(required=True)
    request_id = fields.String(required=True)
    prev_hash = fields.String(required=True)
    row_hash = fields.String(required=True)


class AuditListSchema(Schema):
    """Rows of the audit log, newest first."""

    items = fields.List(fields.Nested(AuditEventSchema), required=True)


class AdminLinkSchema(Schema):
    """A share link or upload request, as an administrator sees it."""

    id = fields.Integer(required=True)
    owner = fields.String(required=True)
    title = fields.String(
        required=True, metadata={"description": "Its file(s) or title"}
    )
    status = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)
    has_password = fields.Boolean(required=True)
    count = fields.Integer(
        required=True, metadata={"description": "Downloads, or files received"}
    )


class AdminTokenSchema(Schema):
    """A personal access token, as an administrator sees it (never the token)."""

    id = fields.Integer(required=True)
    owner = fields.String(required=True)
    name = fields.String(required=True)
    prefix = fields.String(required=True)
    scopes = fields.List(fields.String(), required=True)
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True, allow_none=True)
    last_used_at = fields.DateTime(required=True, allow_none=True)
    status = fields.String(
        required=True, validate=validate.OneOf(["active", "expired"])
    )


class AdminWebhookSchema(Schema):
    """A webhook, as an administrator sees it (never its secret)."""

    id = fields.Integer(required=True)
    owner = fields.String(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    enabled = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)


class AdminSharedSchema(Schema):
    """Everything shared on the server: links, upload requests, API tokens and
    webhooks, newest first."""

    links = fields.List(fields.Nested(AdminLinkSchema), required=True)
    requests = fields.List(fields.Nested(AdminLinkSchema), required=True)
    tokens = fields.List(fields.Nested(AdminTokenSchema), required=True)
    webhooks = fields.List(fields.Nested(AdminWebhookSchema), required=True)


stored_file_schema = StoredFileSchema()
uploaded_schema = UploadedSchema()
file_page_schema = FilePageSchema()
file_list_query_schema = FileListQuerySchema()
upload_form_schema = UploadFormSchema()
logout_query_schema = LogoutQuerySchema()
refresh_body_schema = RefreshBodySchema()
token_pair_schema = TokenPairSchema()
error_schema = ErrorSchema()
liveness_schema = LivenessSchema()
health_schema = HealthSchema()
# What a listing loads and shows of each file: the public metadata's columns.
LISTED_FIELDS = tuple(stored_file_schema.fields)
LISTED_COLUMNS = [getattr(StoredFile, name) for name in LISTED_FIELDS]
account_schema = AccountSchema()
share_request_schema = ShareRequestSchema()
file_request_create_schema = FileRequestCreateSchema()
file_request_schema = FileRequestSchema()
file_request_list_schema = FileRequestListSchema()
guest_request_schema = GuestRequestSchema()
access_event_list_schema = AccessEventListSchema()
share_schema = ShareSchema()
share_list_schema = ShareListSchema()
shared_file_schema = SharedFileSchema()
shared_files_schema = SharedFilesSchema()
several_files_request_schema = SeveralFilesRequestSchema()
several_files_query_schema = SeveralFilesQuerySchema()
access_token_request_schema = AccessTokenRequestSchema()
access_token_schema = AccessTokenSchema()
new_access_token_schema = NewAccessTokenSchema()
access_token_list_schema = AccessTokenListSchema()
webhook_request_schema = WebhookRequestSchema()
webhook_state_schema = WebhookStateSchema()
email_settings_request_schema = EmailSettingsRequestSchema()
email_settings_schema = EmailSettingsSchema()
webhook_schema = WebhookSchema()
sso_start_query_schema = SsoStartQuerySchema()
two_factor_code_schema = TwoFactorCodeSchema()
two_factor_off_schema = TwoFactorOffSchema()
password_check_schema = PasswordCheckSchema()
two_factor_setup_schema = TwoFactorSetupSchema()
recovery_codes_schema = RecoveryCodesSchema()
new_webhook_schema = NewWebhookSchema()
webhook_list_schema = WebhookListSchema()
delivery_list_schema = DeliveryListSchema()
admin_user_schema = AdminUserSchema()
admin_user_list_schema = AdminUserListSchema()
admin_user_create_schema = AdminUserCreateSchema()
admin_user_created_schema = AdminUserCreatedSchema()
invitation_schema = InvitationSchema()
role_schema = RoleSchema()
quota_schema = QuotaSchema()
new_password_schema = NewPasswordSchema()
policies_schema = PoliciesSchema()
audit_query_schema = AuditQuerySchema()
audit_list_schema = AuditListSchema()
admin_shared_schema = AdminSharedSchema()
lifetime_schema = LifetimeSchema()
file_change_schema = FileChangeSchema()
