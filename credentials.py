"""What every bearer credential has in common: a secret kept only as its
hash, and an owner whose trust it needs.

Each kind of credential has a module of its own that owns its format, its
hash, its check and the pattern that keeps it out of the logs (registered
with logs.py): session_tokens (JSON Web Tokens), personal_tokens, share_links,
upload_keys, metrics_token, and passwords. caller.py is the one place
that reads them from a request and says who is asking.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from itsdangerous import Signer, TimestampSigner

import sealing
import storage_keys
from models import AccessToken, ResumableUpload, Share, UploadRequest, User


def secret_hash(secret: str) -> str:
    """What is stored of a random secret (an API token, an upload's key): its
    SHA-256. A fast hash is enough for a secret with nothing to guess from."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def owner_still_trusts(
    record: AccessToken | Share | ResumableUpload | UploadRequest, owner: User
) -> bool:
    """Whether ``owner`` still stands by a credential they made (an API token,
    a share link, an upload's key): it carries the account's token version
    from when it was made, and signing out everywhere or a new password
    replaces that version, ending them all at once. Nothing of an account an
    administrator disabled opens while it is disabled."""
    return record.owner_version == owner.token_version and owner.disabled_at is None


def _keys() -> list:
    """The app's signing keys, newest last (itsdangerous signs with the last)."""
    config = current_app.config
    return [*reversed(config.get("SECRET_KEY_FALLBACKS", [])), config["SECRET_KEY"]]


def signer(salt: str) -> Signer:
    """Signs and checks a link's token (a public id), with SECRET_KEY or a
    fallback key; ``salt`` keeps each kind of link apart."""
    return Signer(_keys(), salt=salt, digest_method=hashlib.sha256)


def timestamp_signer(salt: str) -> TimestampSigner:
    """Signs and checks a value that must also be recent (an unlock cookie,
    a download's claim)."""
    return TimestampSigner(_keys(), salt=salt, digest_method=hashlib.sha256)


def _fernet(secret: str | bytes, purpose: bytes) -> Fernet:
    """The Fernet key derived from one app key for one ``purpose``."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret.encode() if isinstance(secret, str) else secret
    )
    return Fernet(base64.urlsafe_b64encode(key))


def sealer(purpose: bytes) -> MultiFernet:
    """Seals a secret that the server keeps or hands out (Fernet: AES-CBC and
    HMAC-SHA256) under a key derived from SECRET_KEY for ``purpose`` alone,
    and opens what a key in SECRET_KEY_FALLBACKS sealed: a copy of the
    database, or a cookie, holds ciphertext that opens nothing."""
    return MultiFernet([_fernet(key, purpose) for key in reversed(_keys())])


def seal_for(owner_id: int, purpose: bytes, secret: str) -> str:
    """``secret``, kept by the server for account ``owner_id`` (a second
    factor's key, a provider's refresh token), sealed for ``purpose``: under
    the current storage key (sealing.py), or, when encryption at rest is
    off, under a key derived from SECRET_KEY."""
    keys = sealing.keys()
    if keys.current is not None:
        storage_keys.ready()
        return keys.seal_secret(purpose.decode(), owner_id, secret)
    return sealer(purpose).encrypt(f"{owner_id}:{secret}".encode()).decode()


def unseal_for(owner_id: int, purpose: bytes, sealed: str) -> str | None:
    """The secret ``seal_for`` sealed for ``owner_id`` and ``purpose``; None
    when it was sealed for another account or purpose, or under a key this
    server no longer has."""
    if sealing.is_sealed(sealed):
        try:
            return sealing.keys().open_secret(purpose.decode(), owner_id, sealed)
        except sealing.DamagedData as error:
            current_app.logger.warning("A sealed secret could not be opened: %s", error)
            return None
    try:
        plain = sealer(purpose).decrypt(sealed.encode()).decode()
    except (InvalidToken, UnicodeError):
        current_app.logger.warning("A sealed secret could not be opened: wrong key?")
        return None
    owner, _, secret = plain.partition(":")
    return secret if owner == str(owner_id) else None


def resealed_for(owner_id: int, purpose: bytes, sealed: str) -> str | None:
    """A kept secret sealed under the current storage key; None when it
    already is, when there is none, or when it does not open
    (storage_keys.reseal_secrets)."""
    current = sealing.keys().current
    if current is None or sealing.sealed_key_id(sealed) == current:
        return None
    secret = unseal_for(owner_id, purpose, sealed)
    return None if secret is None else seal_for(owner_id, purpose, secret)
