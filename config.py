"""Configuration: read once from the environment, checked before the app starts."""

import base64
import binascii
import os
import re
import secrets
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MIB = 1024 * 1024
DAY = 24 * 3600

# Values people copy from tutorials and templates; a key like this signs nothing.
PLACEHOLDER_SECRETS = {
    "changeme",
    "change-me",
    "change_me",
    "dev",
    "development",
    "password",
    "secret",
    "secret-key",
    "secret_key",
    "supersecret",
    "thisissecret",
    "your-secret-key",
    "your_secret_key",
    "replace-me",
}

MIN_SECRET_BYTES = 32

# The largest chunk a MEDIUMBLOB holds is 16 MiB - 1; mysqlclient sends a chunk
# as a hexadecimal literal (models.MediumBlob), twice its size, so a chunk must
# also stay well under max_allowed_packet / 2 (16 MiB by default).
MAX_CHUNK_SIZE = 4 * MIB

# Sign-in failures are counted in the worker's memory unless a shared store is
# named: right for one process only (gunicorn.conf.py acts on it).
DEFAULT_LIMIT_STORAGE = "memory://"

# The longest a personal access token may live (unless it never expires).
PAT_MAX_SECONDS = 365 * DAY

# How long opening a MySQL/MariaDB connection may take, handshake included.
CONNECT_TIMEOUT_SECONDS = 5


# The SMTP_URL schemes mail.py sends with, and their default ports: TLS from
# the start, STARTTLS (required), and none (a relay on this host).
SMTP_SCHEMES = {"smtps": 465, "smtp": 587, "smtp+plain": 25}


# What single sign-on needs, all three or none.
OIDC_SETTINGS = ("OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET")


class ConfigError(RuntimeError):
    """Raised when the configuration is unsafe or malformed; the app does not start."""


# A storage key's id: short, and safe in a log line and in associated data.
STORAGE_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
STORAGE_KEY_BYTES = 32


def new_storage_key(key_id: str) -> str:
    """A STORAGE_KEYS entry with a fresh random 256-bit key, marked current."""
    key = base64.b64encode(secrets.token_bytes(STORAGE_KEY_BYTES)).decode()
    return f"*{key_id}:{key}"


def parse_storage_keys(text: str, origin: str = "STORAGE_KEYS") -> tuple[dict, str]:
    """The keys files are sealed under: ``{id: 32 bytes}`` and the current id.

    ``text`` holds entries ``id:base64-key`` separated by commas, spaces or
    lines (``#`` starts a comment, for a key file); the current key, which
    new data is sealed under, is marked with a leading ``*`` (a single key
    is current unmarked). Anything else is refused with what is wrong."""
    keys: dict[str, bytes] = {}
    marked = []
    for line in text.splitlines():
        for entry in line.split("#", 1)[0].replace(",", " ").split():
            key_id, colon, encoded = entry.partition(":")
            if key_id.startswith("*"):
                key_id = key_id[1:]
                marked.append(key_id)
            if not colon or not STORAGE_KEY_ID_RE.match(key_id):
                raise ConfigError(
                    f"{origin}: each entry is id:key, the id 1-32 letters, digits, "
                    "'.', '_' or '-' (the current one marked *id:key)"
                )
            if key_id in keys:
                raise ConfigError(f"{origin}: key {key_id!r} is given twice")
            try:
                key = base64.b64decode(
                    encoded.replace("-", "+").replace("_", "/") + "==", validate=False
                )
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != STORAGE_KEY_BYTES:
                raise ConfigError(
                    f"{origin}: key {key_id!r} is not {STORAGE_KEY_BYTES} bytes of "
                    "base64 (make one with `flask storage new-key`)"
                )
            keys[key_id] = key
    if len(marked) > 1:
        raise ConfigError(f"{origin}: only one key may be marked current (*)")
    if not marked and len(keys) > 1:
        raise ConfigError(f"{origin}: mark the current key with a * (*id:key)")
    current = marked[0] if marked else next(iter(keys), "")
    return keys, current


# Settings that may be secrets: each may instead be read from the file that
# NAME_FILE names (a Docker or Podman secret, /run/secrets/...).
SECRET_SETTINGS = (
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "STORAGE_KEYS",
    "DATABASE_URL",
    "DATABASE_PASSWORD",
    "RATELIMIT_STORAGE_URI",
    "SMTP_URL",
    "OIDC_CLIENT_SECRET",
    "METRICS_TOKEN",
)


def env(name: str) -> str | None:
    """The setting ``name`` from the environment; for a secret setting, the
    contents of the file ``NAME_FILE`` names when that is set instead (one
    trailing line end dropped, as editors and ``echo`` add one)."""
    path = os.environ.get(name + "_FILE") if name in SECRET_SETTINGS else None
    if not path:
        return os.environ.get(name)
    if os.environ.get(name):
        raise ConfigError(f"Set {name} or {name}_FILE, not both")
    try:
        with open(path, encoding="utf-8") as secret_file:
            text = secret_file.read()
    except (OSError, UnicodeError) as error:
        raise ConfigError(f"{name}_FILE cannot be read: {error}") from None
    return text.removesuffix("\n").removesuffix("\r")


def _storage_keys_from_env() -> tuple[dict, str]:
    """STORAGE_KEYS, or the file STORAGE_KEYS_FILE names (a container secret)."""
    origin = "STORAGE_KEYS_FILE" if os.environ.get("STORAGE_KEYS_FILE") else None
    return parse_storage_keys(env("STORAGE_KEYS") or "", origin or "STORAGE_KEYS")


def _database_url(default: str) -> str:
    """DATABASE_URL (else ``default``), with DATABASE_PASSWORD put in it when
    that is set: the password can then be a secret of its own, the one the
    database's container is given too."""
    url = env("DATABASE_URL") or default
    password = env("DATABASE_PASSWORD")
    if password is None:
        return url
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("DATABASE_URL is not a database URL") from None
    if parsed.password is not None:
        raise ConfigError(
            "DATABASE_URL holds a password: leave DATABASE_PASSWORD unset"
        )
    return parsed.set(password=password).render_as_string(hide_password=False)


def _int_from_env(name: str, default: int, minimum: int = 1) -> int:
    """Read a positive integer setting, refusing anything else with a clear message."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _flag_from_env(name: str, default: bool = False) -> bool:
    """Read an on/off setting: 1, true, yes or on mean on; unset: ``default``."""
    raw = (os.environ.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0 (on or off), got {raw!r}")


def from_environment(instance_path: str) -> dict:
    """Return the settings the environment asks for, with Lockbox's defaults."""
    default_db = "sqlite:///" + os.path.join(instance_path, "lockbox.db")
    storage_keys, current_key = _storage_keys_from_env()
    return {
        # Encryption at rest (sealing.py): every key data may be sealed under,
        # and the one new data is sealed under; none: stored in clear.
        "STORAGE_KEYS": storage_keys,
        "STORAGE_KEY_CURRENT": current_key,
        "SECRET_KEY": env("SECRET_KEY") or None,
        "SQLALCHEMY_DATABASE_URI": _database_url(default_db),
        "SECRET_KEY_FALLBACKS": [
            key.strip()
            for key in (env("SECRET_KEY_FALLBACKS") or "").split(",")
            if key.strip()
        ],
        "TOKEN_TTL_SECONDS": _int_from_env("TOKEN_TTL_SECONDS", 1200),
        "REFRESH_TTL_SECONDS": _int_from_env("REFRESH_TTL_SECONDS", 7 * 24 * 3600),
        "MAX_CONTENT_LENGTH": _int_from_env("MAX_CONTENT_LENGTH", 1024 * MIB),
        "CHUNK_SIZE": _int_from_env("CHUNK_SIZE", MIB, minimum=1024),
        # One file, however it arrives (a resumable upload is not limited by
        # MAX_CONTENT_LENGTH, which bounds one request body).
        "MAX_FILE_SIZE": _int_from_env("MAX_FILE_SIZE", 10 * 1024 * MIB),
        # Bytes each account may keep, unless `users set-quota` says otherwise;
        # 0: no limit.
        "STORAGE_QUOTA_BYTES": _int_from_env("STORAGE_QUOTA_BYTES", 0, minimum=0),
        # An unfinished resumable upload is removed this long after its last piece.
        "UPLOAD_EXPIRY_SECONDS": _int_from_env("UPLOAD_EXPIRY_SECONDS", 24 * 3600),
        # Share links (shares.py): how long one lives unless its owner says,
        # the longest it may, and how long after a counted download a Range
        # request from the same address resumes it without counting again.
        "SHARE_DEFAULT_SECONDS": _int_from_env("SHARE_DEFAULT_SECONDS", 7 * DAY),
        "SHARE_MAX_SECONDS": _int_from_env("SHARE_MAX_SECONDS", 30 * DAY),
        # How long the access log of links and upload requests is kept.
        "ACCESS_LOG_DAYS": _int_from_env("ACCESS_LOG_DAYS", 90),
        # What an upload request takes in all when its owner sets no cap.
        "REQUEST_MAX_BYTES": _int_from_env("REQUEST_MAX_BYTES", 10 * 1024 * MIB),
        "SHARE_RESUME_SECONDS": _int_from_env("SHARE_RESUME_SECONDS", DAY),
        # Wrong share passwords, per link (and per address, with the sign-ins).
        "SHARE_PASSWORD_LIMIT": os.environ.get("SHARE_PASSWORD_LIMIT")
        or "10 per minute",
        # Personal access tokens (access_tokens.py): the default lifetime, and
        # whether one may be made that never expires.
        "PAT_DEFAULT_SECONDS": _int_from_env("PAT_DEFAULT_SECONDS", 90 * DAY),
        "PAT_ALLOW_NO_EXPIRY": _flag_from_env("PAT_ALLOW_NO_EXPIRY"),
        # Galera's causal read before each request's first statement
        # (cluster.py): the wsrep_sync_wait it runs with, 1 by default; 0
        # turns it off. It waits at most GALERA_SYNC_TIMEOUT seconds: past
        # that, while the cluster waits for a node that died, the request
        # answers 503.
        "GALERA_SYNC_WAIT": _int_from_env("GALERA_SYNC_WAIT", 1, minimum=0),
        "GALERA_SYNC_TIMEOUT": _int_from_env("GALERA_SYNC_TIMEOUT", 10),
        # Webhooks (notifications.py): hosts that may be sent to although
        # they are not public HTTPS (a receiver on the LAN, the tests'),
        # comma-separated; how long a receiver has to answer; how often each
        # process's sender looks for deliveries that are due, and whether it
        # runs at all (off: ``flask notify run`` sends instead).
        "WEBHOOK_ALLOW_HOSTS": frozenset(
            host.strip().lower()
            for host in (os.environ.get("WEBHOOK_ALLOW_HOSTS") or "").split(",")
            if host.strip()
        ),
        "WEBHOOK_TIMEOUT_SECONDS": _int_from_env("WEBHOOK_TIMEOUT_SECONDS", 10),
        "NOTIFY_POLL_SECONDS": _int_from_env("NOTIFY_POLL_SECONDS", 5),
        # E-mail (mail.py): the server that sends it (unset: no e-mail), and
        # the From of every message.
        "SMTP_URL": env("SMTP_URL") or None,
        "MAIL_FROM": os.environ.get("MAIL_FROM") or "Lockbox <lockbox@localhost>",
        "NOTIFY_IN_BACKGROUND": _flag_from_env("NOTIFY_IN_BACKGROUND", default=True),
        # Single sign-on (oidc.py): the OpenID provider (its issuer URL; the
        # rest comes from its discovery document) and this site's client
        # there; whether a first sign-in makes an account; the claim (and
        # the value in it) that makes its person an admin; how often a
        # session made through the provider checks back with it.
        "OIDC_ISSUER": (os.environ.get("OIDC_ISSUER") or "").rstrip("/") or None,
        "OIDC_CLIENT_ID": os.environ.get("OIDC_CLIENT_ID") or None,
        "OIDC_CLIENT_SECRET": env("OIDC_CLIENT_SECRET") or None,
        "OIDC_PROVIDER_NAME": os.environ.get("OIDC_PROVIDER_NAME") or "single sign-on",
        "OIDC_CREATE_ACCOUNTS": _flag_from_env("OIDC_CREATE_ACCOUNTS"),
        "OIDC_ADMIN_CLAIM": os.environ.get("OIDC_ADMIN_CLAIM") or None,
        "OIDC_ADMIN_VALUE": os.environ.get("OIDC_ADMIN_VALUE") or None,
        "OIDC_RECHECK_SECONDS": _int_from_env("OIDC_RECHECK_SECONDS", DAY),
        "OIDC_TIMEOUT_SECONDS": _int_from_env("OIDC_TIMEOUT_SECONDS", 10),
        # Two-factor sign-in (two_factor.py): required of every account that
        # signs in with a password.
        "REQUIRE_TWO_FACTOR": _flag_from_env("REQUIRE_TWO_FACTOR"),
        # Second-factor codes tried per account, right ones too.
        "TWO_FACTOR_LIMIT": os.environ.get("TWO_FACTOR_LIMIT") or "10 per 15 minutes",
        # The admin area (admin.py): how long an invitation or password reset
        # link works; how many days the audit log keeps (`flask audit prune`).
        "INVITATION_SECONDS": _int_from_env("INVITATION_SECONDS", 7 * DAY, minimum=300),
        "AUDIT_DAYS": _int_from_env("AUDIT_DAYS", 365, minimum=1),
        # GET /metrics answers only to this Bearer token; unset: 404.
        "METRICS_TOKEN": env("METRICS_TOKEN") or None,
        "TRUSTED_PROXIES": _int_from_env("TRUSTED_PROXIES", 0, minimum=0),
        "JWT_ISSUER": os.environ.get("JWT_ISSUER") or "lockbox",
        "LOG_FORMAT": (os.environ.get("LOG_FORMAT") or "text").lower(),
        "LOGIN_LIMIT_PER_USERNAME": os.environ.get("LOGIN_LIMIT_PER_USERNAME")
        or "10 per minute",
        "LOGIN_LIMIT_PER_ADDRESS": os.environ.get("LOGIN_LIMIT_PER_ADDRESS")
        or "100 per minute",
        "RATELIMIT_STORAGE_URI": env("RATELIMIT_STORAGE_URI") or DEFAULT_LIMIT_STORAGE,
        # Put before every key in that store: sites that share one Redis keep
        # their counts apart (every instance of one site uses the same).
        "RATELIMIT_KEY_PREFIX": os.environ.get("RATELIMIT_KEY_PREFIX") or "",
        # The flash-message cookie is never sent along with a request another
        # site starts; it is also Secure on HTTPS requests (security.py).
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _flag_from_env("SESSION_COOKIE_SECURE"),
    }


SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A byte count written as people write it: 1048576, 500MB, 10GiB, 1.5 TiB."""
    match = SIZE_RE.fullmatch(text)
    unit = SIZE_UNITS.get(match.group(2).lower()) if match else None
    if match is None or not unit:
        raise ValueError(f"{text!r} is not a size (say e.g. 500MB or 10GiB)")
    return int(float(match.group(1)) * unit)


DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}
DURATION_RE = re.compile(r"\s*(\d+)\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """Seconds written as people write them: 3600, 90m, 12h, 30d, 2w."""
    match = DURATION_RE.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (say e.g. 3600, 12h or 30d)")
    return int(match.group(1)) * DURATION_UNITS[match.group(2).lower()]


def limit_storage_is_shared(uri: str) -> bool:
    """Whether sign-in limits kept at ``uri`` are seen by every process."""
    return not uri.lower().startswith("memory://")


def secret_key_problem(key: str | bytes | None) -> str | None:
    """Say what is wrong with a signing key, or return None when it is usable."""
    if not key:
        return "SECRET_KEY is not set"
    raw = key.encode() if isinstance(key, str) else key
    if raw.strip().lower().decode(errors="replace") in PLACEHOLDER_SECRETS:
        return "SECRET_KEY is a well-known placeholder"
    if len(raw) < MIN_SECRET_BYTES:
        return f"SECRET_KEY is shorter than {MIN_SECRET_BYTES} bytes"
    if len(set(raw)) < 8:
        return "SECRET_KEY repeats too few distinct characters to be random"
    return None


def check(config: dict, relaxed: bool) -> list[str]:
    """Validate the settings in place; return warnings to log.

    ``relaxed`` is true in development (debug) and testing: a missing key is then
    replaced by a random one for this process only.  Anywhere else an unsafe key
    stops the app from starting.
    """
    warnings = []
    problem = secret_key_problem(config.get("SECRET_KEY"))
    if problem and not relaxed:
        raise ConfigError(
            f"{problem}. Set SECRET_KEY to at least {MIN_SECRET_BYTES} random bytes, "
            "e.g. SECRET_KEY=\"$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))')\""
        )
    if problem:
        if config.get("SECRET_KEY"):
            warnings.append(f"{problem}; acceptable only in development")
        else:
            config["SECRET_KEY"] = secrets.token_urlsafe(48)
            warnings.append(
                f"{problem}; using a random key for this process only "
                "(tokens will not survive a restart)"
            )
    for old_key in config.get("SECRET_KEY_FALLBACKS", []):
        old_problem = secret_key_problem(old_key)
        if old_problem and not relaxed:
            raise ConfigError(f"A key in SECRET_KEY_FALLBACKS is unsafe: {old_problem}")
    smtp_url = config.get("SMTP_URL")
    if smtp_url:
        parts = urlsplit(smtp_url)
        if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
            raise ConfigError(
                "SMTP_URL must be smtps://host, smtp://host (STARTTLS) or "
                "smtp+plain://host, with user:password@ before the host if the "
                "server wants them"
            )
    oidc = [config.get(name) for name in OIDC_SETTINGS]
    if any(oidc) and not all(oidc):
        raise ConfigError(
            "Single sign-on needs OIDC_ISSUER, OIDC_CLIENT_ID and "
            "OIDC_CLIENT_SECRET together"
        )
    issuer = urlsplit(config.get("OIDC_ISSUER") or "")
    if all(oidc) and (issuer.scheme not in ("https", "http") or not issuer.hostname):
        raise ConfigError(
            "OIDC_ISSUER must be the provider's URL: https://, or http:// on "
            "a network of your own"
        )
    if bool(config.get("OIDC_ADMIN_CLAIM")) != bool(config.get("OIDC_ADMIN_VALUE")):
        raise ConfigError("OIDC_ADMIN_CLAIM and OIDC_ADMIN_VALUE go together")
    keys, current = config.get("STORAGE_KEYS") or {}, config.get("STORAGE_KEY_CURRENT")
    if keys and current not in keys:
        raise ConfigError("STORAGE_KEY_CURRENT must name one of STORAGE_KEYS")
    if not keys and not relaxed:
        warnings.append(
            "STORAGE_KEYS is not set: files and secrets are stored in clear in the "
            "database (add a key: `flask storage new-key`)"
        )
    chunk = config["CHUNK_SIZE"]
    if chunk > MAX_CHUNK_SIZE:
        raise ConfigError(f"CHUNK_SIZE must be at most {MAX_CHUNK_SIZE} bytes")
    if config["SHARE_DEFAULT_SECONDS"] > config["SHARE_MAX_SECONDS"]:
        raise ConfigError("SHARE_DEFAULT_SECONDS must not exceed SHARE_MAX_SECONDS")
    if config["PAT_DEFAULT_SECONDS"] > PAT_MAX_SECONDS:
        raise ConfigError(f"PAT_DEFAULT_SECONDS must be at most {PAT_MAX_SECONDS}")
    if config["TOKEN_TTL_SECONDS"] < 1:
        raise ConfigError("TOKEN_TTL_SECONDS must be at least 1")
    return warnings


def engine_options(database_uri: str) -> dict:
    """SQLAlchemy engine options suited to the database the URI names."""
    options: dict = {"pool_pre_ping": True}
    scheme = database_uri.split(":", 1)[0].lower()
    if scheme.startswith(("mysql", "mariadb")):
        # Downloads stream rows from an unbuffered result; a reader that stalls
        # (a paused download) must not make the server give up after 60 s.
        options["connect_args"] = {"init_command": "SET SESSION net_write_timeout=3600"}
        # Servers drop idle connections after wait_timeout (8 h by default).
        options["pool_recycle"] = 3600
        # A database that is down refuses connections at once, and one that dies
        # or restarts resets the connections it had, so requests fail at once and
        # answer 503 (pool_pre_ping replaces broken pooled connections once it is
        # back). A host that does not answer at all (powered off, unreachable,
        # frozen) would leave a new connection waiting for a TCP timeout of
        # minutes, or for a handshake that never comes: connect_timeout bounds
        # both. There is deliberately no read or write timeout: it would also cut
        # statements that are slow for good reason (deleting a user's gigabytes
        # of chunks, a migration of file_chunk). A URL's own connect_timeout wins.
        if "connect_timeout" not in make_url(database_uri).query:
            options["connect_args"]["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if scheme in ("mysql", "mysql+mysqldb", "mariadb", "mariadb+mysqldb"):
        # Send bytes as _binary'...' literals so the server never reinterprets a
        # blob as text in the connection's character set.
        options["connect_args"]["binary_prefix"] = True
    return options
