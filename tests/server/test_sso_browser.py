"""Single sign-on in a real browser (headless Chromium through Playwright):
Lockbox's sign-in page, the OpenID provider's own login page (oidc-provider,
started on loopback by oidc_peer.py) and back, signed in."""

import re

import pytest
from playwright.sync_api import expect

from harness.server import LiveServer
from helpers import FREQUENT_SIGN_INS, SECRET_KEY, empty_tables, make_app, screenshot
from oidc_peer import OidcPeer

pytestmark = pytest.mark.slow

CLIENT_ID = "lockbox-browser"
CLIENT_SECRET = "a-client-secret-for-the-browser-tests-0123456789"
PROVIDER_NAME = "Example SSO"


@pytest.fixture(scope="module")
def peer_and_site(tmp_path_factory):
    """The OpenID provider with the person carol, and gunicorn on a database
    of its own that signs in through it (and may make accounts)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sso') / 'lockbox.db'}"
    app = make_app(url)
    server = LiveServer(
        {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": url, **FREQUENT_SIGN_INS}
    )
    # The server's address is known before it starts: the provider must know
    # it first (the redirect_uri), and the server the provider's (its issuer).
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [server.url + "/sso/callback"],
    }
    with OidcPeer(clients=[client]) as peer:
        peer.add_account("p-carol", "carol", "carol@example.org")
        peer.add_account("p-erin", "erin")
        server.env.update(
            OIDC_ISSUER=peer.issuer,
            OIDC_CLIENT_ID=CLIENT_ID,
            OIDC_CLIENT_SECRET=CLIENT_SECRET,
            OIDC_CREATE_ACCOUNTS="1",
            OIDC_PROVIDER_NAME=PROVIDER_NAME,
        )
        with server:
            yield peer, server
    empty_tables(app)


def sign_in_at_the_provider(page, peer, site, login):
    """On the provider's own login page: type the login and any password,
    and wait for Lockbox's files page the provider sends the browser back to."""
    assert page.url.startswith(peer.issuer + "/"), page.url
    expect(
        page.get_by_role("heading", name="Sign in to the test provider")
    ).to_be_visible()
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill("anything")
    with page.expect_navigation(url=f"{site.url}/?token=*"):
        page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_load_state("load")


def assert_signed_in_through_the_provider(page, username):
    """The files page names the account, whose account page says it signs in
    through the provider."""
    expect(page.get_by_role("heading", name="Upload a file")).to_be_visible()
    expect(page.locator(".who strong")).to_have_text(username)
    page.get_by_role("link", name="Account", exact=True).click()
    page.wait_for_load_state("load")
    expect(page.locator("#account-username")).to_have_text(username)
    expect(page.locator("#sso-state")).to_have_text(
        f"This account signs in with {PROVIDER_NAME}."
    )


def test_the_sign_in_pages_button_signs_in_at_the_provider(page, peer_and_site):
    """The button leads to the provider's form and back, signed in as a new "carol"."""
    peer, site = peer_and_site
    page.goto(site.url + "/login")
    page.wait_for_load_state("load")
    button = page.get_by_role(
        "button", name=f"Sign in with {PROVIDER_NAME}", exact=True
    )
    expect(button).to_be_visible()
    screenshot(page, "sign-in-sso")
    refused = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    button.click()
    try:
        expect(page).to_have_url(re.compile(re.escape(peer.issuer) + "/"))
    except AssertionError:
        pytest.fail(f"Still at {page.url}; Chromium said: {refused}")
    page.wait_for_load_state("load")
    sign_in_at_the_provider(page, peer, site, "p-carol")
    screenshot(page, "sso-signed-in")
    assert_signed_in_through_the_provider(page, "carol")
    screenshot(page, "account-sso")


def test_a_trip_to_the_provider_comes_back_signed_in(page, peer_and_site):
    """Sent to /sso/login, Chromium comes back from the provider signed in."""
    peer, site = peer_and_site
    page.goto(site.url + "/sso/login")
    page.wait_for_load_state("load")
    sign_in_at_the_provider(page, peer, site, "p-erin")
    assert_signed_in_through_the_provider(page, "erin")
    screenshot(page, "account-sso-erin")
