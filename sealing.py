"""Encryption at rest: what the database keeps of a file's bytes and of the
secrets the server must read back (second-factor keys, a provider's refresh
token, webhook signing secrets) is sealed with AES-256-GCM under the storage
keys (STORAGE_KEYS), through the cryptography library.

Every seal takes a fresh random 96-bit nonce, kept in front of the
ciphertext, and binds in as associated data where the value belongs (a
chunk's file id and number, a secret's purpose and row) and the key id: a
chunk swapped with another, moved to another file or place, or relabelled
with another key id fails its tag instead of opening as someone else's
bytes. Without STORAGE_KEYS nothing is sealed (``key_id`` None), and what was
stored in clear before keys were added still reads (``flask storage rekey``
seals it).

storage_keys.py checks the configured keys against the check values the
database records, so that a missing or wrong key stops the app at start.
"""

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

NONCE_BYTES = 12
TAG_BYTES = 16
# What sealing adds to each chunk row: the nonce and the tag.
OVERHEAD = NONCE_BYTES + TAG_BYTES
# How a sealed secret starts (a Fernet token starts "gAAAA", a webhook
# secret kept in clear "whsec_").
SECRET_PREFIX = "gcm:"
_CHECK_MESSAGE = b"lockbox storage key check"


class DamagedData(RuntimeError):
    """Sealed data that does not open: edited, moved, or sealed under a key
    this server lacks or holds a different value for."""


class Keys:
    """The storage keys of one app: what seals and opens. Taken once in a
    request (``keys()``) and usable from the threads that store and read
    chunks, which have no app context."""

    def __init__(self, keys: dict[str, bytes], current: str | None):
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        # The key new data is sealed under; None when encryption is off.
        self.current = current if keys else None

    def seal_chunk(
        self, file_id: int, seq: int, data: bytes
    ) -> tuple[str | None, bytes]:
        """Chunk ``seq`` of file ``file_id`` as it is stored: (key id, nonce
        + ciphertext + tag); (None, the bytes) when encryption is off."""
        key_id = self.current
        if key_id is None:
            return None, data
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(
            nonce, data, _chunk_context(file_id, seq, key_id)
        )
        return key_id, nonce + sealed

    def open_chunk(
        self, file_id: int, seq: int, key_id: str | None, stored: bytes
    ) -> bytes:
        """A stored chunk's bytes, checked; DamagedData if it does not open
        (stored in clear, ``key_id`` None: as it is)."""
        if key_id is None:
            return stored
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DamagedData(
                f"chunk {seq} is sealed under key {key_id!r}, which is not configured"
            )
        view = memoryview(stored)
        try:
            return cipher.decrypt(
                view[:NONCE_BYTES],
                view[NONCE_BYTES:],
                _chunk_context(file_id, seq, key_id),
            )
        except (InvalidTag, ValueError):
            raise DamagedData(f"chunk {seq} failed its integrity check") from None

    def seal_secret(self, purpose: str, row_id: int, secret: str) -> str:
        """``secret`` as kept for row ``row_id`` and ``purpose``, under the
        current key; as it is when encryption is off."""
        key_id = self.current
        if key_id is None:
            return secret
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(
            nonce, secret.encode(), _secret_context(purpose, row_id, key_id)
        )
        encoded = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{SECRET_PREFIX}{key_id}:{encoded}"

    def open_secret(self, purpose: str, row_id: int, sealed: str) -> str:
        """What ``seal_secret`` sealed for this row and purpose (a value that
        is not sealed: as it is); DamagedData if it does not open here."""
        if not is_sealed(sealed):
            return sealed
        key_id, _, encoded = sealed[len(SECRET_PREFIX) :].partition(":")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DamagedData(
                f"a secret is sealed under key {key_id!r}, which is not configured"
            )
        try:
            raw = base64.urlsafe_b64decode(encoded)
            plain = cipher.decrypt(
                raw[:NONCE_BYTES],
                raw[NONCE_BYTES:],
                _secret_context(purpose, row_id, key_id),
            )
            return plain.decode()
        except (InvalidTag, ValueError):
            raise DamagedData("a sealed secret failed its integrity check") from None


def keys() -> Keys:
    """This app's storage keys, made ready once per process."""
    made = current_app.extensions.get("lockbox.keys")
    if made is None:
        made = Keys(
            current_app.config.get("STORAGE_KEYS") or {},
            current_app.config.get("STORAGE_KEY_CURRENT"),
        )
        current_app.extensions["lockbox.keys"] = made
    return made


def current_key_id() -> str | None:
    """The key new data is sealed under; None when encryption is off."""
    return keys().current


def check_value(key: bytes) -> str:
    """A key's fingerprint for the database to keep: an HMAC of a fixed
    message, which tells a wrong key from the right one and reveals nothing
    of it."""
    return hmac.new(key, _CHECK_MESSAGE, hashlib.sha256).hexdigest()


def _chunk_context(file_id: int, seq: int, key_id: str) -> bytes:
    return f"lockbox chunk\0{file_id}\0{seq}\0{key_id}".encode()


def _secret_context(purpose: str, row_id: int, key_id: str) -> bytes:
    return f"lockbox secret\0{purpose}\0{row_id}\0{key_id}".encode()


def is_sealed(value: str) -> bool:
    """Whether a kept secret was sealed here (and not by an older release)."""
    return value.startswith(SECRET_PREFIX)


def sealed_key_id(value: str) -> str | None:
    """The key a sealed secret is sealed under; None for one that is not."""
    if not is_sealed(value):
        return None
    return value[len(SECRET_PREFIX) :].partition(":")[0]
