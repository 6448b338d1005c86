"""Two-factor sign-in in a real browser (headless Chromium through
Playwright): setting it up from the account page with the key the page
shows, signing in with a code or a recovery code, turning it off, and the
setup page on a phone."""

import re
import string

import pytest
import requests
import segno
from playwright.sync_api import expect

from harness.server import LiveServer
from helpers import (
    FREQUENT_SIGN_INS,
    PASSWORD,
    SECRET_KEY,
    AuthActions,
    bearer,
    empty_tables,
    make_app,
    screenshot,
)
from totp import Authenticator

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
RECOVERY_CODE = r"[a-z2-7]{4}(-[a-z2-7]{4}){3}"
WRONG_CODE = "Wrong or already used two-factor code"
# Everyone who signs in here: one account per test, so that no test finds
# another's second factor on.
USERS = ("dora", "pia", "nell")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """gunicorn on a database of its own, with an account per test."""
    url = f"sqlite:///{tmp_path_factory.mktemp('two-factor') / 'lockbox.db'}"
    app = make_app(url)
    actions = AuthActions(app, app.test_client())
    for username in USERS:
        actions.create_user(username)
    env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": url, **FREQUENT_SIGN_INS}
    with LiveServer(env) as server:
        yield server
    empty_tables(app)


def submit(page, button):
    """Press a form's button and wait for the page it leads to."""
    with page.expect_navigation():
        page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_load_state("load")


def sign_in_with_password(page, site, username):
    """The sign-in page's first step: username and password."""
    page.goto(site.url + "/login")
    page.wait_for_load_state("load")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    submit(page, "Sign in")


def enter_code(page, code):
    """The code page's step: type ``code`` and press Sign in."""
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    page.get_by_label("Code from your authenticator app").fill(code)
    submit(page, "Sign in")


def sign_out(page):
    """Press the header's Sign out: back on the sign-in page."""
    submit(page, "Sign out")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def open_account(page):
    """Follow the header's Account link."""
    page.get_by_role("link", name="Account", exact=True).click()
    page.wait_for_load_state("load")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()


def assert_signed_in_as(page, username):
    """The files page, with the header naming the account."""
    expect(page.get_by_role("heading", name="Upload a file")).to_be_visible()
    expect(page.locator(".who")).to_contain_text("Signed in as")
    expect(page.locator(".who strong")).to_have_text(username)
    assert "/?token=" in page.url


def set_up(page) -> Authenticator:
    """From the account page: press Set up, read the key off the setup page
    (what a person types into the app when they can't scan)."""
    page.get_by_label("Your password").fill(PASSWORD)
    submit(page, "Set up two-factor sign-in")
    expect(
        page.get_by_role("heading", name="Set up two-factor sign-in")
    ).to_be_visible()
    secret = page.locator("#totp-secret").inner_text()
    assert len(secret) == 32 and set(secret) <= set(string.ascii_uppercase + "234567")
    return Authenticator(secret)


def test_a_second_factor_set_up_on_the_page_guards_every_sign_in(page, site):
    """On: sign-in needs a code or a recovery code, once each; off: the password."""
    sign_in_with_password(page, site, "dora")
    assert_signed_in_as(page, "dora")
    open_account(page)
    expect(page.locator("#two-factor-state")).to_contain_text("Off.")
    app = set_up(page)
    qr_code = page.locator(".qr-code svg")
    expect(qr_code).to_be_visible()
    expect(qr_code.locator("title")).to_have_text("QR code for your authenticator app")
    screenshot(page, "two-factor-setup-flow")
    page.get_by_label("Code", exact=True).fill(app.code())
    submit(page, "Turn on")

    expect(page.get_by_role("heading", name="Two-factor sign-in is on")).to_be_visible()
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(RECOVERY_CODE, code), code
    screenshot(page, "recovery-codes")
    page.get_by_role("link", name="Back to your account").click()
    page.wait_for_load_state("load")
    expect(page.locator("#two-factor-state")).to_contain_text(
        "On: signing in with your password also asks for a code"
    )
    expect(page.locator("#two-factor-state")).to_contain_text("10 recovery codes left.")
    sign_out(page)

    # The password alone opens nothing now: the code page, then the files.
    sign_in_with_password(page, site, "dora")
    expect(page.locator(".who")).to_have_count(0)
    screenshot(page, "sign-in-code")
    enter_code(page, app.code())
    assert_signed_in_as(page, "dora")
    sign_out(page)

    # A wrong code: told so, still on the code page, and nobody signed in.
    sign_in_with_password(page, site, "dora")
    enter_code(page, app.wrong_code())
    expect(page.get_by_role("alert")).to_have_text(WRONG_CODE)
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    expect(page.locator(".who")).to_have_count(0)
    screenshot(page, "sign-in-code-wrong")
    # A recovery code in its place, as printed, lets the person in once.
    enter_code(page, codes[0])
    assert_signed_in_as(page, "dora")
    sign_out(page)
    sign_in_with_password(page, site, "dora")
    enter_code(page, codes[0])
    expect(page.get_by_role("alert")).to_have_text(WRONG_CODE)
    enter_code(page, codes[1])
    assert_signed_in_as(page, "dora")

    open_account(page)
    expect(page.locator("#two-factor-state")).to_contain_text("8 recovery codes left.")
    screenshot(page, "account-two-factor-on")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Code", exact=True).fill(app.code())
    submit(page, "Turn two-factor sign-in off")
    expect(page.get_by_role("status")).to_have_text("Two-factor sign-in is off.")
    expect(page.locator("#two-factor-state")).to_contain_text("Off.")
    sign_out(page)
    sign_in_with_password(page, site, "dora")
    assert_signed_in_as(page, "dora")


def test_the_setup_page_fits_a_phone_with_a_scannable_code(browser, site):
    """Phone and desktop: whole QR at 4 px a module, the key, no sideways scroll."""
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        sign_in_with_password(page, site, "pia")
        open_account(page)
        app = set_up(page)
        uri = page.get_by_role("link", name="this link").get_attribute("href")
        assert uri == app.totp.provisioning_uri(name="pia", issuer_name="Lockbox")
        modules, _ = segno.make(uri, error="m").symbol_size(scale=1)
        qr_code = page.locator(".qr-code svg")
        key = page.locator("#totp-secret")
        too_wide = []
        for size, name in (
            (PHONE, "two-factor-setup-phone"),
            (DESKTOP, "two-factor-setup"),
        ):
            page.set_viewport_size(size)
            screenshot(page, name)
            box = qr_code.bounding_box()
            assert box["width"] == box["height"] == modules * 4, (modules, box)
            assert 0 <= box["x"] and box["x"] + box["width"] <= size["width"], box
            expect(key).to_be_visible()
            key_box = key.bounding_box()
            assert key_box["x"] + key_box["width"] <= size["width"], key_box
            width = page.evaluate("() => document.documentElement.scrollWidth")
            if width > size["width"]:
                nav = page.get_by_role("navigation", name="Account").bounding_box()
                too_wide.append(
                    f"{width} px wide on a {size['width']} px screen (the "
                    f"header's links end at {nav['x'] + nav['width']:.0f} px)"
                )
        assert too_wide == []
    finally:
        context.close()


def test_signing_in_with_a_code_works_without_javascript(browser, site):
    """With scripts off, the password and then the code sign in all the same."""
    token = requests.get(site.url + "/login", auth=("nell", PASSWORD), timeout=30)
    token = token.json()["token"]
    begun = requests.post(
        site.url + "/account/two-factor",
        json={"password": PASSWORD},
        headers=bearer(token),
        timeout=30,
    )
    assert begun.status_code == 200, begun.text
    app = Authenticator(begun.json()["secret"])
    confirmed = requests.post(
        site.url + "/account/two-factor/confirm",
        json={"code": app.code()},
        headers=bearer(token),
        timeout=30,
    )
    assert confirmed.status_code == 200, confirmed.text
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in_with_password(page, site, "nell")
        enter_code(page, app.code())
        assert_signed_in_as(page, "nell")
    finally:
        context.close()
