"""SHA-256 whose progress can be saved in the database and resumed later.

A file that arrives in several requests (a resumable upload, each piece perhaps
through another worker or instance) is hashed piece by piece, and the hash of
the whole must be the same as if it had arrived at once. hashlib cannot save a
hash in progress; OpenSSL's own SHA-256 (the code hashlib runs) keeps it in a
plain 112-byte structure, SHA256_CTX, which is saved and loaded here as bytes.
The calls go to the same libcrypto the ``ssl`` module uses, at its speed, and
release the GIL while they hash.
"""

import ctypes
import ctypes.util

_libcrypto = ctypes.CDLL(ctypes.util.find_library("crypto") or "libcrypto.so.3")


class _SHA256Context(ctypes.Structure):
    """OpenSSL's SHA256_CTX (openssl/sha.h), a public and stable layout."""

    _fields_ = [
        ("h", ctypes.c_uint32 * 8),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_uint32 * 16),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


STATE_SIZE = ctypes.sizeof(_SHA256Context)
_CONTEXT = ctypes.POINTER(_SHA256Context)
_libcrypto.SHA256_Init.argtypes = [_CONTEXT]
_libcrypto.SHA256_Update.argtypes = [_CONTEXT, ctypes.c_void_p, ctypes.c_size_t]
_libcrypto.SHA256_Final.argtypes = [ctypes.c_char_p, _CONTEXT]


class ResumableSHA256:
    """hashlib's ``sha256()`` interface, plus ``state()`` and ``from_state()``."""

    def __init__(self) -> None:
        self._context = _SHA256Context()
        _libcrypto.SHA256_Init(ctypes.byref(self._context))

    @classmethod
    def from_state(cls, state: bytes | None) -> "ResumableSHA256":
        """A hash that goes on from a saved ``state()`` (None: from the start)."""
        digest = cls()
        if state is not None:
            if len(state) != STATE_SIZE:
                raise ValueError(f"A SHA-256 state is {STATE_SIZE} bytes")
            digest._context = _SHA256Context.from_buffer_copy(state)
        return digest

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Hash more bytes (bytes, bytearray or a memoryview of either)."""
        if not data:
            return
        if isinstance(data, bytes):
            _libcrypto.SHA256_Update(ctypes.byref(self._context), data, len(data))
            return
        view = memoryview(data)
        if view.readonly:
            data = bytes(view)
            _libcrypto.SHA256_Update(ctypes.byref(self._context), data, len(data))
            return
        buffer = (ctypes.c_char * view.nbytes).from_buffer(view)
        _libcrypto.SHA256_Update(ctypes.byref(self._context), buffer, view.nbytes)

    def state(self) -> bytes:
        """The hash so far, as bytes to store and resume with ``from_state``."""
        return bytes(self._context)

    def hexdigest(self) -> str:
        """The digest of everything hashed so far (the hash can go on after)."""
        context = _SHA256Context.from_buffer_copy(bytes(self._context))
        out = ctypes.create_string_buffer(32)
        _libcrypto.SHA256_Final(out, ctypes.byref(context))
        return out.raw.hex()
