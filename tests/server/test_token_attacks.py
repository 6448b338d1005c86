"""Forged and malformed tokens against the running app, over real HTTP.

Every case must be a 401 with a JSON message, never a 500.
"""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
import requests

from helpers import SECRET_KEY, make_token
from helpers import token_claims as claims

pytestmark = pytest.mark.slow

ATTACKER_KEY = "attacker-controlled-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCD"


def segment(data) -> str:
    """base64url without padding, of JSON or bytes."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_signed(header: dict, payload: dict, key: bytes, digest=hashlib.sha256) -> str:
    """A JWT signed by hand, for keys and headers PyJWT would refuse to make."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{segment(signature)}"


def unsigned(alg: str) -> str:
    """An alg=none style token with no signature."""
    return f"{segment({'alg': alg, 'typ': 'JWT'})}.{segment(claims())}."


def nested(depth: int, version: str) -> str:
    """A token signed with the real key whose payload nests lists ``depth`` deep.

    Built by hand: Python's own JSON encoder would refuse such depth. It stays
    under the app's token size limit, so it reaches the JSON decoder.
    """
    body = (
        json.dumps(claims(ver=version))[:-1]
        + ', "x": '
        + "[" * depth
        + "]" * depth
        + "}"
    )
    header = segment({"alg": "HS256", "typ": "JWT"})
    signing_input = f"{header}.{segment(body.encode())}"
    signature = hmac.new(SECRET_KEY.encode(), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{segment(signature.digest())}"


def cases(version: str = "0") -> dict:
    """Every forged or malformed token, by name; each carries the account's
    token ``version``, so that only what its name says is wrong with it."""
    good = make_token(claims(ver=version))
    header, payload, signature = good.split(".")
    now = int(time.time())
    hs256 = {"alg": "HS256", "typ": "JWT"}
    return {
        "alg-none": unsigned("none"),
        "alg-None": unsigned("None"),
        "alg-NONE": unsigned("NONE"),
        "stripped-signature": f"{header}.{payload}.",
        "no-signature-part": f"{header}.{payload}",
        "truncated-signature": good[:-6],
        "tampered-payload": ".".join(
            [header, segment(claims(ver=version, sub="2")), signature]
        ),
        "hs384": jwt.encode(claims(ver=version), SECRET_KEY, algorithm="HS384"),
        "hs512": hand_signed(
            {"alg": "HS512", "typ": "JWT"},
            claims(ver=version),
            SECRET_KEY.encode(),
            hashlib.sha512,
        ),
        "other-key": make_token(claims(ver=version), key=ATTACKER_KEY),
        "empty-key": hand_signed(hs256, claims(ver=version), b""),
        "missing-exp": jwt.encode(
            claims(ver=version, exp=None), SECRET_KEY, algorithm="HS256"
        ),
        "missing-iat": jwt.encode(
            claims(ver=version, iat=None), SECRET_KEY, algorithm="HS256"
        ),
        "missing-sub": jwt.encode(
            claims(ver=version, sub=None), SECRET_KEY, algorithm="HS256"
        ),
        "missing-jti": jwt.encode(
            claims(ver=version, jti=None), SECRET_KEY, algorithm="HS256"
        ),
        "nbf-in-future": make_token(claims(ver=version, nbf=now + 3600)),
        "iat-in-future": make_token(claims(ver=version, iat=now + 3600)),
        "wrong-issuer": make_token(claims(ver=version, iss="evil")),
        "jku-header": hand_signed(
            {**hs256, "jku": "http://127.0.0.1:9/keys"},
            claims(ver=version),
            ATTACKER_KEY.encode(),
        ),
        "x5u-header": hand_signed(
            {**hs256, "x5u": "http://127.0.0.1:9/cert"},
            claims(ver=version),
            ATTACKER_KEY.encode(),
        ),
        "jwk-header": hand_signed(
            {
                **hs256,
                "jwk": {"kty": "oct", "k": segment(ATTACKER_KEY.encode())},
            },
            claims(ver=version),
            ATTACKER_KEY.encode(),
        ),
        "kid-header": hand_signed(
            {**hs256, "kid": "../../../../dev/null"}, claims(ver=version), b""
        ),
        "deeply-nested": nested(1200, version),
        "junk": "%%%not*base64%%%.@@@.!!!",
        "three-dots": "...",
        "header-only": segment(hs256),
    }


@pytest.fixture(scope="module")
def site(sqlite_site):
    """The running app, shared by this module's tests."""
    return sqlite_site


def get_files(site, token, where="header"):
    """GET /files with a token in the Authorization header or the query string."""
    if where == "header":
        headers = {"Authorization": f"Bearer {token}"}
        return requests.get(site.url + "/files", headers=headers, timeout=10)
    return requests.get(site.url + "/files", params={"token": token}, timeout=10)


def test_a_genuine_token_is_accepted(site):
    genuine = make_token(claims(ver=site.alice_version))
    assert get_files(site, genuine).status_code == 200


@pytest.mark.parametrize("name", sorted(cases()))
@pytest.mark.parametrize("where", ["header", "query"])
def test_forged_or_malformed_token_is_refused(site, name, where):
    response = get_files(site, cases(site.alice_version)[name], where)
    assert response.status_code == 401, response.text
    assert response.json()["message"] in {"Invalid token", "Token expired"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer    ", "bearer\t"])
def test_bearer_with_nothing_after_it_is_refused(site, value):
    response = requests.get(
        site.url + "/files", headers={"Authorization": value}, timeout=10
    )
    assert response.status_code == 401
    assert "message" in response.json()


@pytest.mark.parametrize("where", ["header", "query"])
def test_hundred_kilobyte_token_is_refused_before_the_app(site, where):
    # gunicorn's request limits stop it: 431 for a header, 414 for a URL.
    token = make_token(claims()) + "A" * 100_000
    assert get_files(site, token, where).status_code in (414, 431)


def test_hundred_kilobyte_token_in_a_body_is_a_401(site):
    token = make_token(claims(typ="refresh")) + "A" * 100_000
    response = requests.post(
        site.url + "/refresh", json={"refresh_token": token}, timeout=10
    )
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid token"}
