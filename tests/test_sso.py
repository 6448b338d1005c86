"""Single sign-on against a real OpenID provider (oidc-provider, started on
loopback by oidc_peer.py): the code flow with PKCE, state and nonce; ID
tokens that must not be believed; accounts made, linked and refused; the
admin claim; and the re-check that ends the session of a person the
provider disabled."""

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

import sso
from helpers import HTML, PASSWORD, basic_auth, bearer
from models import User, db, utcnow
from oidc_peer import OidcPeer, sign_in_at_provider
from session_tokens import RENEW_COOKIE

CLIENT_ID = "lockbox-tests"
CLIENT_SECRET = "a-client-secret-for-the-tests-only-0123456789"
CALLBACK = "http://localhost/sso/callback"


@pytest.fixture(scope="module")
def peer():
    """The OpenID provider, for the whole module."""
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [CALLBACK],
    }
    with OidcPeer(clients=[client]) as provider:
        provider.add_account("p-ann", "ann", "ann@example.org", groups=["staff"])
        provider.add_account("p-boss", "boss", groups=["lockbox-admins"])
        yield provider


@pytest.fixture
def app_settings(request, peer):
    """Lockbox with the provider as its single sign-on (a test's parameter
    changes some settings)."""
    peer.tamper(None)
    peer.up()
    peer.enable("p-ann")
    changes = getattr(request, "param", {})
    return {
        "OIDC_ISSUER": peer.issuer,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_CREATE_ACCOUNTS": True,
        "OIDC_ADMIN_CLAIM": "groups",
        "OIDC_ADMIN_VALUE": "lockbox-admins",
        "OIDC_PROVIDER_NAME": "Example SSO",
        **changes,
    }


def to_provider(client, path="/sso/login", **kwargs):
    """Start a trip to the provider; the authorization URL it redirects to."""
    response = client.get(path, headers=HTML, **kwargs)
    assert response.status_code == 303, response.data
    return response.headers["Location"]


def callback_path(url: str) -> str:
    """The app-relative part of the provider's redirect back."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return f"{parts.path}?{parts.query}"


def provider_sign_in(client, login="p-ann", start="/sso/login", method="get", **kw):
    """Go to the provider, sign in there as ``login``; the callback path."""
    if method == "get":
        authorize = to_provider(client, start, **kw)
    else:
        response = client.post(start, headers={**HTML, **kw.pop("headers", {})}, **kw)
        assert response.status_code == 303, response.data
        authorize = response.headers["Location"]
    return callback_path(sign_in_at_provider(requests.Session(), authorize, login))


def link_through_provider(client, token, login="p-ann", password=PASSWORD):
    """Ask to link the account (its password again), sign in at the provider
    as ``login``; the callback path."""
    return provider_sign_in(
        client,
        login=login,
        start="/account/sso/link",
        method="post",
        headers=bearer(token),
        data={"password": password},
    )


def user_row(app, **filters):
    with app.app_context():
        return db.session.execute(
            db.select(User).filter_by(**filters)
        ).scalar_one_or_none()


def test_a_full_sign_in_makes_an_account_and_a_page_session(app, client, peer):
    """The code flow with PKCE, state and nonce; the account is the
    provider's person by iss and sub; the session is a page session."""
    authorize = to_provider(client)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(peer.issuer)
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"] and query["nonce"] and query["code_challenge"]
    assert "response_mode" not in query  # the query string, no form_post
    callback = callback_path(
        sign_in_at_provider(requests.Session(), authorize, "p-ann")
    )
    response = client.get(callback, headers=HTML)
    assert response.status_code == 303
    assert "token=" in response.headers["Location"]
    assert RENEW_COOKIE in response.headers.get("Set-Cookie", "")
    user = user_row(app, username="ann")
    assert user.oidc_issuer == peer.issuer and user.oidc_subject == "p-ann"
    assert user.password_hash is None and user.role == "user"
    token = parse_qs(urlsplit(response.headers["Location"]).query)["token"][0]
    account = client.get("/account", headers=bearer(token)).get_json()
    assert account["single_sign_on"] is True and account["has_password"] is False
    # Signing in again finds the same account.
    client.get(provider_sign_in(client), headers=HTML)
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(User.id))).scalar() == 1


def test_an_account_without_a_password_has_no_basic_sign_in(app, client):
    """The tutorial's GET /login needs a password: an account made by single
    sign-on has none, and no password opens it."""
    client.get(provider_sign_in(client), headers=HTML)
    for password in ("", PASSWORD, "None"):
        response = client.get("/login", headers=basic_auth("ann", password))
        assert response.status_code == 401


@pytest.mark.parametrize(
    "app_settings", [{"OIDC_CREATE_ACCOUNTS": False}], indirect=True
)
def test_no_account_is_made_when_creation_is_off(app, client, app_settings, peer):
    """Creation off: a person with no linked account is refused, told why."""
    response = client.get(provider_sign_in(client), headers=HTML)
    assert response.status_code == 403
    assert b"link it from your account page" in response.data
    assert user_row(app, oidc_subject="p-ann") is None


def test_a_username_that_is_taken_gets_a_number(app, client, auth):
    """A clash of usernames: the new account is ann-2, the old one untouched."""
    auth.create_user("ann")
    client.get(provider_sign_in(client), headers=HTML)
    made = user_row(app, oidc_subject="p-ann")
    assert made.username == "ann-2"
    assert user_row(app, username="ann").oidc_subject is None


def test_a_wrong_state_is_refused(app, client):
    """A callback whose state this browser never sent: 400, nobody signed in."""
    callback = provider_sign_in(client)
    forged = callback.replace("state=", "state=x", 1)
    response = client.get(forged, headers=HTML)
    assert response.status_code == 400
    assert "token=" not in response.headers.get("Location", "")
    assert user_row(app, oidc_subject="p-ann") is None


def test_a_replayed_callback_is_refused(app, client):
    """The same code and state a second time: the state was used up (and
    the provider would refuse the code too)."""
    callback = provider_sign_in(client)
    assert client.get(callback, headers=HTML).status_code == 303
    again = client.get(callback, headers=HTML)
    assert again.status_code == 400
    assert RENEW_COOKIE not in again.headers.get("Set-Cookie", "")


def test_a_code_used_in_another_browser_is_refused(app, client):
    """A code stolen from one browser's redirect, replayed with another
    browser's own fresh state: the provider refuses a code it gave once."""
    stolen = provider_sign_in(client)
    assert client.get(stolen, headers=HTML).status_code == 303
    thief = app.test_client()
    own = parse_qs(urlsplit(provider_sign_in(thief)).query)
    code = parse_qs(urlsplit(stolen).query)["code"][0]
    response = thief.get(
        f"/sso/callback?code={code}&state={own['state'][0]}&iss={own['iss'][0]}",
        headers=HTML,
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "mode", ["forged", "expired", "wrong_audience", "other_issuer", "bad_nonce"]
)
def test_an_id_token_that_does_not_hold_up_is_refused(app, client, peer, mode):
    """Forged, expired, for another client, from another issuer, or with
    another nonce: 400, no account, no session."""
    callback = provider_sign_in(client)
    peer.tamper(mode)
    try:
        response = client.get(callback, headers=HTML)
    finally:
        peer.tamper(None)
    assert response.status_code == 400, response.data
    assert b"could not be verified" in response.data
    assert RENEW_COOKIE not in response.headers.get("Set-Cookie", "")
    assert user_row(app, oidc_subject="p-ann") is None


def test_a_provider_that_is_down_gives_a_clear_page(app, client, peer):
    """Down when the sign-in starts, or when its code is exchanged: 503 with
    what to do, never a 500."""
    peer.down()
    try:
        response = client.get("/sso/login", headers=HTML)
        assert response.status_code == 503
        assert b"can&#39;t be reached" in response.data
        assert (
            client.get("/sso/login")
            .get_json()["message"]
            .startswith("Your identity provider can't be reached")
        )
    finally:
        peer.up()
    callback = provider_sign_in(client)
    peer.down()
    try:
        response = client.get(callback, headers=HTML)
    finally:
        peer.up()
    assert response.status_code == 503
    assert user_row(app, oidc_subject="p-ann") is None


def test_linking_an_existing_account(app, client, auth):
    """A password account links to the provider from its account page; then
    the provider signs it in, and unlinking keeps the password."""
    auth.create_user("alice")
    token = auth.token("alice")
    callback = link_through_provider(client, token)
    response = client.get(callback, headers=HTML)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/account")
    assert user_row(app, username="alice").oidc_subject == "p-ann"
    # The provider's person now signs in to alice, and no account is made.
    signed_in = client.get(provider_sign_in(client), headers=HTML)
    token_then = parse_qs(urlsplit(signed_in.headers["Location"]).query)["token"][0]
    assert client.get("/account", headers=bearer(token_then)).get_json()[
        "username"
    ] == ("alice")
    assert user_row(app, username="ann") is None
    assert client.post("/account/sso/unlink", headers=bearer(token)).status_code == 204
    assert user_row(app, username="alice").oidc_subject is None
    assert auth.login("alice").status_code == 200


def test_a_person_links_to_one_account_only(app, client, auth):
    """The provider's person signs in to ann already: linking alice to it too
    is a 409, and nothing changes."""
    client.get(provider_sign_in(client), headers=HTML)
    auth.create_user("alice")
    token = auth.token("alice")
    callback = link_through_provider(client, token)
    response = client.get(callback, headers=HTML)
    assert response.status_code == 409
    assert user_row(app, username="alice").oidc_subject is None


def test_an_account_without_a_password_cannot_unlink(app, client):
    """Unlinking would leave no way in: 400."""
    signed_in = client.get(provider_sign_in(client), headers=HTML)
    token = parse_qs(urlsplit(signed_in.headers["Location"]).query)["token"][0]
    response = client.post("/account/sso/unlink", headers=bearer(token))
    assert response.status_code == 400
    assert user_row(app, username="ann").oidc_subject == "p-ann"


def test_the_admin_claim_makes_an_admin_and_its_loss_unmakes_one(app, client, peer):
    """groups holding lockbox-admins: admin; out of the group at the next
    sign-in: a user again."""
    client.get(provider_sign_in(client, login="p-boss"), headers=HTML)
    assert user_row(app, username="boss").role == "admin"
    # Another administrator: the last one is never taken away (next test).
    made = app.test_cli_runner().invoke(
        args=["users", "create", "root", "--role", "admin"], input="a long password\n"
    )
    assert made.exit_code == 0, made.output
    peer.add_account("p-boss", "boss", groups=["staff"])
    try:
        client.get(provider_sign_in(client, login="p-boss"), headers=HTML)
    finally:
        peer.add_account("p-boss", "boss", groups=["lockbox-admins"])
    assert user_row(app, username="boss").role == "user"


def test_the_admin_claims_loss_takes_away_no_last_administrator(app, client, peer):
    """The provider's group leaves no administrator if followed: the role
    stays (the rule every role change follows), and the sign-in goes on."""
    client.get(provider_sign_in(client, login="p-boss"), headers=HTML)
    peer.add_account("p-boss", "boss", groups=["staff"])
    try:
        answer = client.get(provider_sign_in(client, login="p-boss"), headers=HTML)
    finally:
        peer.add_account("p-boss", "boss", groups=["lockbox-admins"])
    assert answer.status_code == 303
    assert user_row(app, username="boss").role == "admin"


def make_recheck_due(app, username="ann"):
    with app.app_context():
        user = db.session.execute(
            db.select(User).filter_by(username=username)
        ).scalar_one()
        user.oidc_checked_at = utcnow() - timedelta(days=2)
        db.session.commit()


def renew(client):
    """GET /renew as a browser whose page has no token."""
    return client.get("/renew?next=/", headers=HTML)


def test_the_recheck_keeps_a_person_the_provider_still_lets_in(app, client):
    """Past OIDC_RECHECK_SECONDS a renewal asks the provider (its refresh
    token): still fine, the page session goes on."""
    client.get(provider_sign_in(client), headers=HTML)
    make_recheck_due(app)
    response = renew(client)
    assert response.status_code == 303
    assert "token=" in response.headers["Location"]
    assert utcnow() - user_row(app, username="ann").oidc_checked_at < timedelta(
        minutes=1
    )


def test_the_recheck_ends_the_session_of_a_person_disabled_at_the_provider(
    app, client, peer
):
    """Disabled at the provider: the next renewal past the re-check time
    ends the session, and the browser goes to sign in."""
    client.get(provider_sign_in(client), headers=HTML)
    assert "token=" in renew(client).headers["Location"]  # not due: no check
    peer.disable("p-ann")
    make_recheck_due(app)
    response = renew(client)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/login?")
    assert "token=" not in response.headers["Location"]
    assert user_row(app, username="ann").oidc_refresh_token is None
    # The sign-in is over for good, even once the provider answers again.
    peer.enable("p-ann")
    again = renew(client)
    assert "token=" not in again.headers["Location"]


def test_a_recheck_while_the_provider_is_down_waits_for_it(app, client, peer):
    """The provider can't be reached when a re-check is due: 503 with what to
    do, and the session is still there once it is back."""
    client.get(provider_sign_in(client), headers=HTML)
    make_recheck_due(app)
    peer.down()
    try:
        response = renew(client)
    finally:
        peer.up()
    assert response.status_code == 503
    assert "token=" in renew(client).headers["Location"]


def test_a_recheck_without_a_refresh_token_goes_through_the_provider(app, client):
    """No refresh token to ask with: the browser goes through the provider
    again (which, while its own session lasts, sends it straight back)."""
    client.get(provider_sign_in(client), headers=HTML)
    with app.app_context():
        user = db.session.execute(
            db.select(User).filter_by(username="ann")
        ).scalar_one()
        user.oidc_refresh_token = None
        user.oidc_checked_at = utcnow() - timedelta(days=2)
        db.session.commit()
    response = renew(client)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/sso/login")


def test_the_sign_in_page_offers_the_provider(app, client):
    """The provider's button sits next to the form; without single sign-on
    set up there is none, and its routes are 404."""
    page = client.get("/login", headers=HTML).data
    assert b"Sign in with Example SSO" in page


NO_SSO = {"OIDC_ISSUER": None, "OIDC_CLIENT_ID": None, "OIDC_CLIENT_SECRET": None}


@pytest.mark.one_database
@pytest.mark.parametrize("app_settings", [NO_SSO], indirect=True)
def test_without_single_sign_on_there_is_no_button(app, client):
    """No OIDC_ISSUER: no button, and /sso/login is a 404."""
    assert b"Sign in with" not in client.get("/login", headers=HTML).data
    assert client.get("/sso/login").status_code == 404


@pytest.mark.one_database
def test_the_pages_forms_may_lead_to_the_provider_and_nowhere_else(client, peer):
    """Browsers hold a form's redirects to the CSP's form-action: the sign-in
    button's form goes on to the provider, so its origin (only) is added."""
    policy = client.get("/login", headers=HTML).headers["Content-Security-Policy"]
    form_action = policy.split("form-action", 1)[1].split(";")[0].split()
    assert form_action == ["'self'", peer.issuer]


def test_linking_needs_the_password_and_an_unlinked_account(app, client, auth):
    """A stolen session alone links nothing: the password is asked again
    (wrong: 403, nobody sent to the provider); an account linked already is
    refused (409) rather than moved to another person at the provider."""
    auth.create_user("alice")
    token = auth.token("alice")
    wrong = client.post(
        "/account/sso/link", headers=bearer(token), data={"password": "guess"}
    )
    assert wrong.status_code == 403
    missing = client.post("/account/sso/link", headers=bearer(token), json={})
    assert missing.status_code == 400
    client.get(link_through_provider(client, token), headers=HTML)
    assert user_row(app, username="alice").oidc_subject == "p-ann"
    again = client.post(
        "/account/sso/link", headers=bearer(token), data={"password": PASSWORD}
    )
    assert again.status_code == 409
    assert user_row(app, username="alice").oidc_subject == "p-ann"


def test_a_link_trip_kept_and_replayed_later_links_nothing(
    app, client, auth, monkeypatch
):
    """The browser's session cookie keeps a trip to the provider: brought
    back after FLOW_SECONDS, or after the sign-in that started it ended, it
    links nothing."""
    auth.create_user("alice")
    token = auth.token("alice")
    callback = link_through_provider(client, token)
    monkeypatch.setattr(sso, "FLOW_SECONDS", 0)
    time.sleep(1.1)
    assert client.get(callback, headers=HTML).status_code == 400
    assert user_row(app, username="alice").oidc_subject is None
    monkeypatch.undo()
    callback = link_through_provider(client, token)
    client.post("/logout", headers=bearer(token))
    assert client.get(callback, headers=HTML).status_code == 400
    assert user_row(app, username="alice").oidc_subject is None


def test_a_callback_without_a_code_is_a_400(app, client):
    """The provider's redirect cut short (state, no code): a clear 400."""
    callback = provider_sign_in(client)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    response = client.get(f"/sso/callback?state={state}")
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("This sign-in could not")


def test_a_name_taken_in_another_case_gets_a_number(app, client, auth):
    """ "Ann" exists: the provider's "ann" becomes ann-2, never a look-alike."""
    auth.create_user("Ann")
    client.get(provider_sign_in(client), headers=HTML)
    assert user_row(app, oidc_subject="p-ann").username == "ann-2"


def test_refreshing_keeps_checking_back_with_the_provider(app, client, peer):
    """The renewal cookie traded at POST /refresh: the new refresh token is
    still of a single sign-on, and once the provider disables the person a
    due refresh is refused."""
    client.get(provider_sign_in(client), headers=HTML)
    cookie = client.get_cookie(RENEW_COOKIE, path="/renew").value
    pair = client.post("/refresh", json={"refresh_token": cookie}).get_json()
    assert jwt.decode(pair["refresh_token"], options={"verify_signature": False})["sso"]
    peer.disable("p-ann")
    make_recheck_due(app)
    refused = client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refused.status_code == 401


def test_api_tokens_of_an_account_made_by_single_sign_on_end_with_the_person(
    app, client, peer
):
    """An account whose only way in is the provider: its API tokens are
    checked back too, and end (all of them) once the provider refuses."""
    signed_in = client.get(provider_sign_in(client), headers=HTML)
    token = parse_qs(urlsplit(signed_in.headers["Location"]).query)["token"][0]
    made = client.post(
        "/tokens", json={"name": "ci", "scopes": ["files:read"]}, headers=bearer(token)
    ).get_json()["token"]
    assert client.get("/files", headers=bearer(made)).status_code == 200
    make_recheck_due(app)
    assert client.get("/files", headers=bearer(made)).status_code == 200  # vouched
    peer.disable("p-ann")
    make_recheck_due(app)
    assert client.get("/files", headers=bearer(made)).status_code == 401
    peer.enable("p-ann")
    assert client.get("/files", headers=bearer(made)).status_code == 401


@pytest.mark.one_database
def test_trips_abandoned_at_the_provider_do_not_grow_the_cookie(client):
    """Each start keeps its state in the browser's session cookie: only the
    last few are kept, so a person pressing the button again and again never
    grows the cookie past what browsers keep (4 KB)."""
    for _ in range(25):
        to_provider(client)
    cookie = client.get_cookie("session")
    assert cookie is not None and len(cookie.value) < 3000, len(cookie.value)
