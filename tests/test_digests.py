"""digests.py: a SHA-256 saved and resumed gives hashlib's digest."""

import hashlib
import random

import pytest

from digests import STATE_SIZE, ResumableSHA256


@pytest.mark.parametrize("seed", range(5))
def test_saved_and_resumed_hash_equals_one_pass(seed):
    rng = random.Random(seed)
    content = rng.randbytes(300_001)
    digest, offset = ResumableSHA256(), 0
    while offset < len(content):
        size = rng.choice([0, 1, 63, 64, 65, 4096, 50_000])
        piece = content[offset : offset + size]
        kind = rng.choice([bytes, bytearray, lambda b: memoryview(bytearray(b))])
        digest = ResumableSHA256.from_state(digest.state())
        digest.update(kind(piece))
        offset += size
    assert digest.hexdigest() == hashlib.sha256(content).hexdigest()


def test_a_read_only_memoryview_is_hashed_too():
    digest = ResumableSHA256()
    digest.update(memoryview(b"abc"))
    assert digest.hexdigest() == hashlib.sha256(b"abc").hexdigest()


def test_the_digest_can_be_read_and_hashing_go_on():
    digest = ResumableSHA256()
    digest.update(b"ab")
    assert digest.hexdigest() == hashlib.sha256(b"ab").hexdigest()
    digest.update(b"c")
    assert digest.hexdigest() == hashlib.sha256(b"abc").hexdigest()


def test_a_fresh_state_is_the_empty_digest():
    assert ResumableSHA256.from_state(None).hexdigest() == hashlib.sha256().hexdigest()
    assert len(ResumableSHA256().state()) == STATE_SIZE


def test_a_state_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="112 bytes"):
        ResumableSHA256.from_state(b"short")
