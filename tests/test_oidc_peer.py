"""The OpenID Connect provider the single-sign-on tests use (oidc_peer.py):
a code flow with PKCE, refresh tokens, disabled accounts, the tampering
proxy and an outage."""

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests

from oidc_peer import OidcPeer, sign_in_at_provider

CLIENT_ID = "lockbox"
CLIENT_SECRET = "lockbox-client-secret"
REDIRECT_URI = "http://127.0.0.1:9/cb"


@pytest.fixture(scope="module")
def peer():
    """The provider, with one client and one account."""
    with OidcPeer(
        clients=[
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [REDIRECT_URI],
            }
        ]
    ) as peer:
        peer.add_account("alice", "alice", "alice@example.com", ["staff", "admins"])
        yield peer


@pytest.fixture(scope="module")
def discovery(peer):
    """The provider's discovery document."""
    answer = requests.get(peer.issuer + "/.well-known/openid-configuration", timeout=10)
    answer.raise_for_status()
    return answer.json()


def code_flow(discovery, login, scope="openid profile email"):
    """Sign in as ``login`` and exchange the code: the token response and the
    nonce sent."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        .rstrip(b"=")
        .decode()
    )
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    with requests.Session() as session:
        callback = sign_in_at_provider(
            session, discovery["authorization_endpoint"] + "?" + urlencode(query), login
        )
    assert callback.startswith(REDIRECT_URI + "?")
    params = parse_qs(urlsplit(callback).query)
    assert params["state"] == [state]
    answer = requests.post(
        discovery["token_endpoint"],
        auth=(CLIENT_ID, CLIENT_SECRET),
        data={
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json(), nonce


def verified_claims(discovery, id_token):
    """The ID token's claims, checked against the provider's published keys."""
    keys = jwt.PyJWKSet.from_dict(
        requests.get(discovery["jwks_uri"], timeout=10).json()
    )
    kid = jwt.get_unverified_header(id_token)["kid"]
    return jwt.decode(
        id_token,
        keys[kid].key,
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=discovery["issuer"],
    )


def refresh(discovery, refresh_token):
    """The token endpoint's answer to a refresh_token grant."""
    return requests.post(
        discovery["token_endpoint"],
        auth=(CLIENT_ID, CLIENT_SECRET),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        timeout=10,
    )


def test_discovery_names_the_proxy_as_issuer(peer, discovery):
    assert discovery["issuer"] == peer.issuer
    assert discovery["token_endpoint"].startswith(peer.issuer + "/")
    assert discovery["code_challenge_methods_supported"] == ["S256"]


def test_code_flow_refresh_and_disabled_account(peer, discovery):
    tokens, nonce = code_flow(discovery, "alice", "openid profile email offline_access")
    claims = verified_claims(discovery, tokens["id_token"])
    assert claims["sub"] == "alice"
    assert claims["nonce"] == nonce
    assert claims["preferred_username"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["groups"] == ["staff", "admins"]

    refreshed = refresh(discovery, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert verified_claims(discovery, refreshed.json()["id_token"])["sub"] == "alice"

    peer.disable("alice")
    try:
        refused = refresh(discovery, tokens["refresh_token"])
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
        with pytest.raises(RuntimeError, match="disabled"):
            code_flow(discovery, "alice")
    finally:
        peer.enable("alice")


def test_no_refresh_token_without_offline_access(discovery):
    tokens, _ = code_flow(discovery, "alice")
    assert "refresh_token" not in tokens


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("expired", jwt.ExpiredSignatureError),
        ("wrong_audience", jwt.InvalidAudienceError),
        ("other_issuer", jwt.InvalidIssuerError),
        ("forged", jwt.InvalidSignatureError),
    ],
)
def test_tampered_id_tokens_fail_verification(peer, discovery, mode, error):
    peer.tamper(mode)
    try:
        tokens, _ = code_flow(discovery, "alice")
    finally:
        peer.tamper(None)
    assert jwt.get_unverified_header(tokens["id_token"])["kid"] == peer.kid
    with pytest.raises(error):
        verified_claims(discovery, tokens["id_token"])


def test_bad_nonce_is_signed_by_the_provider_key(peer, discovery):
    peer.tamper("bad_nonce")
    try:
        tokens, nonce = code_flow(discovery, "alice")
    finally:
        peer.tamper(None)
    assert nonce != "x"
    assert verified_claims(discovery, tokens["id_token"])["nonce"] == "x"


def test_down_refuses_connections_and_up_restores(peer):
    url = peer.issuer + "/.well-known/openid-configuration"
    peer.down()
    try:
        with pytest.raises(requests.ConnectionError) as refused:
            requests.get(url, timeout=5)
        assert "refused" in str(refused.value).lower()
    finally:
        peer.up()
    assert requests.get(url, timeout=5).json()["issuer"] == peer.issuer
