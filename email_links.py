"""The link that confirms an account's e-mail address: sent to the address,
opened by its owner while signed in (webhooks.py), good for two days.

It carries the account's id and a digest of the address, signed with the
app's key (itsdangerous, HMAC-SHA256): it confirms that address for that
account only, and a later change of address makes it worthless.
"""

import hashlib
import re

from itsdangerous import BadSignature

import logs
from credentials import timestamp_signer
from models import User

SALT = "lockbox.email"
CONFIRM_SECONDS = 2 * 24 * 3600


def _value(user: User) -> str:
    """What a confirmation of the account's present address signs."""
    assert user.email is not None
    digest = hashlib.sha256(user.email.casefold().encode()).hexdigest()[:32]
    return f"{user.id}-{digest}"


def confirmation_token(user: User) -> str:
    """A fresh token confirming ``user``'s present address."""
    return timestamp_signer(SALT).sign(_value(user)).decode("ascii")


def confirms(user: User, token: str) -> bool:
    """Whether ``token`` confirms ``user``'s present address, within its time."""
    if user.email is None:
        return False
    try:
        value = timestamp_signer(SALT).unsign(token, max_age=CONFIRM_SECONDS)
    except BadSignature:
        return False
    return value.decode("ascii", "replace") == _value(user)


# Wherever the link appears in a log line (the sign-in page's ``next`` too).
logs.redact_secret(re.compile(r"(/account/email/confirm/)[^/?&\s\"']+"))
logs.redact_secret(re.compile(r"(%2Faccount%2Femail%2Fconfirm%2F)[^&\s\"']+"))
