"""The second factor of a password sign-in: time-based one-time codes
(TOTP, RFC 6238, made and checked by pyotp) from an authenticator app, and
single-use recovery codes for the day the phone is lost.

The TOTP secret is stored sealed (credentials.sealer, under a key derived
from SECRET_KEY) with the account's id inside, so that a copy of the
database alone can make no code, and a sealed secret moved to another
account opens nothing. A code is accepted once: the time step it belongs to
must be later than the last one accepted, which one conditional UPDATE
checks and records together, so two requests with the same code cannot both
pass, on one server or through two Galera nodes (certification refuses one).
Recovery codes are kept as SHA-256 hashes (80 random bits each: nothing to
guess from) and used up the same way.

Between the password and the code a sign-in holds a ticket: signed, good
for TICKET_SECONDS, naming the account and its token version, so that it
dies with a new password or a sign-out everywhere. It is not a session: it
opens nothing but the code's question.
"""

import base64
import hashlib
import hmac
import re
import secrets
import time
from datetime import UTC, datetime

import pyotp
import segno
from flask import current_app
from itsdangerous import BadSignature

import policies
from credentials import seal_for, timestamp_signer, unseal_for
from models import RecoveryCode, User, db, rowcount, utcnow
from passwords import password_matches

# What an authenticator app shows the account as.
ISSUER_NAME = "Lockbox"
# Codes of the step before and after the current one are accepted too: the
# phone's clock and the server's may differ by a little, and typing takes time.
VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
TICKET_SECONDS = 300
SECRET_PURPOSE = b"lockbox totp secret"
TICKET_SALT = "lockbox sign-in ticket"
# A code as typed: six digits (spaces allowed), or a recovery code (16
# letters and digits of base32, in groups or not).
CODE_RE = re.compile(r"[0-9]{6}")
RECOVERY_RE = re.compile(r"[a-z2-7]{16}")


def now() -> float:
    """The time codes are checked at (the tests fix it)."""
    return time.time()


def is_on(user: User) -> bool:
    """Whether ``user`` signs in with a second factor."""
    return user.totp_enabled_at is not None


def required_of(user: User) -> bool:
    """Whether ``user`` must have a second factor and has none yet: the
    REQUIRE_TWO_FACTOR setting or the administrator's policy, for accounts
    that sign in with a password."""
    if user.password_hash is None or is_on(user):
        return False
    return bool(
        current_app.config["REQUIRE_TWO_FACTOR"]
    ) or policies.two_factor_required(user)


# --- the secret ---------------------------------------------------------------


def secret_of(user: User) -> str | None:
    """The account's TOTP secret (being set up, or on), or None when it has
    none or it cannot be opened."""
    if not user.totp_secret:
        return None
    return unseal_for(user.id, SECRET_PURPOSE, user.totp_secret)


def begin(user: User) -> str:
    """Start setting up a second factor for ``user``: a new secret, stored
    sealed but not yet on (``confirm`` turns it on). Not committed."""
    secret = pyotp.random_base32()
    user.totp_secret = seal_for(user.id, SECRET_PURPOSE, secret)
    user.totp_enabled_at = None
    user.totp_last_step = 0
    return secret


def setup_uri(user: User, secret: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans."""
    totp = pyotp.TOTP(secret)
    return totp.provisioning_uri(name=user.username, issuer_name=ISSUER_NAME)


def qr_code_svg(uri: str) -> str:
    """``uri`` as a QR code: an inline SVG element, made on the server."""
    return segno.make(uri, error="m").svg_inline(
        scale=4, title="QR code for your authenticator app", dark="#000", light="#fff"
    )


def confirm(user: User, code: str) -> list[str] | None:
    """Turn the second factor being set up on, if ``code`` is its current
    code: the new recovery codes, shown once; None for a wrong code (nothing
    changed). Not committed."""
    if is_on(user) or not _accept_code(user, code):
        return None
    user.totp_enabled_at = utcnow()
    return new_recovery_codes(user)


def turn_off(user: User) -> None:
    """Sign in without a second factor again (not committed)."""
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = 0
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


# --- checking a code ------------------------------------------------------------


def _normal(code: object) -> str:
    """A code as typed, without spaces and dashes, in lower case."""
    if not isinstance(code, str) or len(code) > 64:
        return ""
    return re.sub(r"[\s-]", "", code).lower()


def _matching_step(secret: str, code: str) -> int | None:
    """The time step whose code ``code`` is, within the window; else None."""
    totp = pyotp.TOTP(secret)
    step = totp.timecode(datetime.fromtimestamp(now(), UTC))
    for offset in range(-VALID_WINDOW, VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step + offset), code):
            return step + offset
    return None


def _accept_code(user: User, code: str) -> bool:
    """Whether ``code`` is a TOTP code of ``user``'s that was never used:
    its step is recorded, in the same statement that checks it is later than
    the last one accepted (not committed)."""
    secret = secret_of(user)
    code = _normal(code)
    if secret is None or not CODE_RE.fullmatch(code):
        return False
    step = _matching_step(secret, code)
    if step is None:
        return False
    claimed = db.session.execute(
        db.update(User)
        .where(User.id == user.id, User.totp_last_step < step)
        .values(totp_last_step=step)
    )
    if rowcount(claimed) != 1:
        return False
    db.session.refresh(user)
    return True


def recovery_hash(code: str) -> str:
    """What is stored of a recovery code."""
    return hashlib.sha256(_normal(code).encode()).hexdigest()


def _use_recovery_code(user: User, code: str) -> bool:
    """Whether ``code`` is one of ``user``'s unused recovery codes; it is
    used up in the same statement (not committed)."""
    if not RECOVERY_RE.fullmatch(_normal(code)):
        return False
    used = db.session.execute(
        db.update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == recovery_hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return rowcount(used) == 1


def check(user: User, code: object) -> bool:
    """Whether ``code`` (a TOTP code or a recovery code) lets ``user`` in;
    either is then used up (not committed). False for a user without a
    second factor."""
    if not is_on(user) or not isinstance(code, str):
        return False
    return _accept_code(user, code) or _use_recovery_code(user, code)


def owner_confirms(user: User, password: object, code: object) -> bool:
    """Whether the person is the account's owner, not just a holder of its
    session: ``password`` is its password and, when its second factor is on,
    ``code`` one of its codes (then used up; not committed). The password is
    checked first: a wrong one uses up no code."""
    if user.password_hash is None or not isinstance(password, str):
        return False
    if not password_matches(user.password_hash, password):
        return False
    return not is_on(user) or check(user, code)


def new_recovery_codes(user: User) -> list[str]:
    """Ten new recovery codes for ``user``, replacing any it had (not
    committed): shown once, stored as hashes."""
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
        db.session.add(RecoveryCode(user_id=user.id, code_hash=recovery_hash(raw)))
    return codes


def recovery_codes_left(user: User) -> int:
    """How many of ``user``'s recovery codes are unused."""
    return db.session.execute(
        db.select(db.func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ).scalar_one()


# --- between the password and the code ------------------------------------------


def ticket_for(user: User) -> str:
    """A ticket saying ``user``'s password was right a moment ago."""
    nonce = secrets.token_urlsafe(8)
    value = f"{user.id}:{user.token_version}:{nonce}"
    return timestamp_signer(TICKET_SALT).sign(value).decode()


def ticket_user(ticket: object) -> User | None:
    """The account a ticket (younger than TICKET_SECONDS) was made for, if it
    still has the token version it had and still needs a second factor; else
    None."""
    if not isinstance(ticket, str) or len(ticket) > 512:
        return None
    try:
        value = timestamp_signer(TICKET_SALT).unsign(ticket, max_age=TICKET_SECONDS)
    except BadSignature:
        return None
    user_id, version, _ = value.decode().split(":", 2)
    if not user_id.isdigit() or len(user_id) > 10:
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.token_version != version:
        return None
    if not (is_on(user) or required_of(user)):
        return None  # the second factor was turned off: sign in again
    return user
