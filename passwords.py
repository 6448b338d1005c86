"""The password credential: who may have an account (the username rules),
passwords kept as scrypt hashes, and checking a sign-in. Share links with a
password use the same hashing."""

import functools
import re
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

from models import User, db

# Who may have an account: the rules `users create` enforces. A name outside
# them belongs to nobody, so it never reaches the database (where MariaDB's
# PAD SPACE collation would find "bob" for "bob ").
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,79}")


def canonical_username(name: object) -> str | None:
    """The one spelling a username is looked up and rate-limited by, or None
    when ``name`` cannot be anybody's (not a string, or outside USERNAME_RE)."""
    if isinstance(name, str) and USERNAME_RE.fullmatch(name):
        return name
    return None


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
    if user is None or user.password_hash is None:
        # Nobody, or an account that signs in through its identity provider.
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    return user


def password_matches(password_hash: str, password: str) -> bool:
    """Whether ``password`` is the one ``password_hash`` was made from."""
    return check_password_hash(password_hash, password)
