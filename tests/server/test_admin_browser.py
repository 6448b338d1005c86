"""The admin area in a real browser (headless Chromium through Playwright),
as two people use it at once: an administrator made with the command line
invites dana; dana sets her password through the invitation link, turns on
two-factor sign-in, uploads a file and shares it; the administrator makes
links need a password, which dana's next link then needs, and disables
dana, whose open page stops working and who can no longer sign in."""

import os
import re
import string
import subprocess
import sys

import pytest
import requests
from playwright.sync_api import expect

from harness.server import ROOT, LiveServer
from helpers import (
    FREQUENT_SIGN_INS,
    SECRET_KEY,
    empty_tables,
    make_app,
    screenshot,
)
from totp import Authenticator

# A real server, as every browser test here (pyproject.toml's marker).
pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 800}
ADMIN_PASSWORD = "an administrator's long passphrase"
DANA_PASSWORD = "dana's own passphrase, typed twice"
LINK_PASSWORD = "open sesame 42"
# The README's picture of the admin area's user list.
DOCS_PICTURE = ROOT / "docs" / "screenshots" / "admin-users.png"
INVITATION_URL = r"/invite/[A-Za-z0-9_-]{43}"
RECOVERY_CODE = r"[a-z2-7]{4}(-[a-z2-7]{4}){3}"
LINKS_NEED_PASSWORD = "This server requires a password on every link"
DISABLED = "Your account is disabled — ask your administrator"
DISABLED_AT_SIGN_IN = "This account is disabled — ask your administrator"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """gunicorn on a database of its own, whose one account is the
    administrator "admin", made the way the README says: ``flask users
    create admin --role admin``, the password read from stdin."""
    url = f"sqlite:///{tmp_path_factory.mktemp('admin') / 'lockbox.db'}"
    app = make_app(url)
    env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": url, **FREQUENT_SIGN_INS}
    made = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app"]
        + ["users", "create", "admin", "--role", "admin"],
        input=ADMIN_PASSWORD + "\n",
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "Created administrator admin"
    with LiveServer(env) as server:
        yield server
    empty_tables(app)


def submit(page, button, status=None):
    """Press a form's button and wait for the page it leads to; the answer's
    status must be ``status`` when given."""
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_load_state("load")
    if status is not None:
        assert navigation.value.status == status, navigation.value.url


def follow(page, link, within=None):
    """Click a link (in the named navigation, if given) and wait for its page."""
    place = page if within is None else page.get_by_role("navigation", name=within)
    with page.expect_navigation():
        place.get_by_role("link", name=link, exact=True).click()
    page.wait_for_load_state("load")


def sign_in(page, site, username, password, status=None):
    """The sign-in page's form (the page the browser is on, if it is the
    sign-in page): username and password."""
    if not re.search(r"/login(\?|$)", page.url):
        page.goto(site.url + "/login")
        page.wait_for_load_state("load")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    submit(page, "Sign in", status)


def assert_signed_in_as(page, username):
    """The files page, with the header naming the account."""
    expect(page.get_by_role("heading", name="Upload a file")).to_be_visible()
    expect(page.locator(".who strong")).to_have_text(username)


def assert_signed_out(page):
    """The sign-in page, nobody named in the header."""
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator(".who")).to_have_count(0)


def user_row(page, username):
    """A row of the admin area's user table."""
    return page.locator("#user-table tbody tr").filter(
        has=page.get_by_role("link", name=username, exact=True)
    )


def test_an_admin_invites_dana_sets_a_policy_and_disables_her(browser, site):
    """The story of the admin area, each step through the pages alone."""
    admin_context = browser.new_context(viewport=DESKTOP, color_scheme="light")
    dana_context = browser.new_context(viewport=DESKTOP, color_scheme="light")
    admin, dana = admin_context.new_page(), dana_context.new_page()
    try:
        # 1. The administrator signs in; the header's Admin link leads to
        # the users; inviting dana shows her link, this once.
        sign_in(admin, site, "admin", ADMIN_PASSWORD)
        assert_signed_in_as(admin, "admin")
        follow(admin, "Admin", within="Account")
        expect(admin).to_have_url(re.compile(r"/admin/users(\?|$)"))
        expect(admin.get_by_role("heading", name="Users", exact=True)).to_be_visible()
        expect(user_row(admin, "admin")).to_contain_text("Admin")
        invite = admin.locator("#invite-form")
        expect(admin.get_by_role("heading", name="Invite someone")).to_be_visible()
        invite.get_by_label("Username").fill("dana")
        invite.get_by_label("E-mail").fill("dana@example.org")
        submit(admin, "Invite", status=201)
        expect(admin.get_by_role("heading", name="dana is invited")).to_be_visible()
        link_box = admin.get_by_role("textbox", name="Link for dana")
        expect(link_box).not_to_be_editable()
        expect(link_box).to_have_value(
            re.compile("^" + re.escape(site.url) + INVITATION_URL + "$")
        )
        invitation = link_box.input_value()
        expect(admin.locator("#invitation-mail")).to_have_text(
            "It was not e-mailed (this server sends no e-mail): hand it over yourself."
        )
        screenshot(admin, "admin-invitation")
        follow(admin, "All users")
        dana_row = user_row(admin, "dana")
        expect(dana_row).to_contain_text("dana@example.org")
        expect(dana_row.locator("td[data-label=Status]")).to_have_text("Active")
        expect(dana_row.locator("td[data-label='Signs in with']")).to_have_text(
            "nothing yet (invited)"
        )
        # Shown once: the list has no trace of the link.
        assert invitation.rsplit("/", 1)[1] not in admin.content()

        # 2. dana, in a browser of her own: the link sets her password once,
        # she signs in with it and turns on two-factor sign-in.
        assert dana.goto(invitation).status == 200
        expect(
            dana.get_by_role("heading", name="Set your password for Lockbox")
        ).to_be_visible()
        expect(dana.get_by_label("Username")).to_have_value("dana")
        expect(dana.get_by_label("Username")).not_to_be_editable()
        dana.get_by_label("New password").fill(DANA_PASSWORD)
        dana.get_by_label("The same password again").fill(DANA_PASSWORD)
        screenshot(dana, "invitation-set-password")
        submit(dana, "Set password")
        expect(dana).to_have_url(re.compile(r"/login$"))
        expect(dana.get_by_role("status")).to_have_text(
            "Your password is set: sign in with it."
        )
        assert_signed_out(dana)
        screenshot(dana, "invitation-used")
        used_again = requests.get(
            invitation, headers={"Accept": "text/html"}, timeout=30
        )
        assert used_again.status_code == 410
        assert "This link was used or has expired" in used_again.text

        sign_in(dana, site, "dana", DANA_PASSWORD)
        assert_signed_in_as(dana, "dana")
        expect(
            dana.get_by_role("navigation", name="Account").get_by_role(
                "link", name="Admin"
            )
        ).to_have_count(0)
        follow(dana, "Account", within="Account")
        expect(dana.get_by_role("heading", name="Your account")).to_be_visible()
        expect(dana.locator("#two-factor-state")).to_contain_text("Off.")
        dana.get_by_label("Your password").fill(DANA_PASSWORD)
        submit(dana, "Set up two-factor sign-in")
        expect(
            dana.get_by_role("heading", name="Set up two-factor sign-in")
        ).to_be_visible()
        expect(dana.locator(".qr-code svg")).to_be_visible()
        secret = dana.locator("#totp-secret").inner_text()
        assert len(secret) == 32, secret
        assert set(secret) <= set(string.ascii_uppercase + "234567"), secret
        phone = Authenticator(secret)
        dana.get_by_label("Code", exact=True).fill(phone.code())
        submit(dana, "Turn on")
        expect(
            dana.get_by_role("heading", name="Two-factor sign-in is on")
        ).to_be_visible()
        codes = dana.locator("#recovery-codes li").all_inner_texts()
        assert len(codes) == 10 and len(set(codes)) == 10, codes
        assert all(re.fullmatch(RECOVERY_CODE, code) for code in codes), codes
        screenshot(dana, "dana-recovery-codes")
        # Signing in again: the password, then a code from the app.
        submit(dana, "Sign out")
        expect(dana.get_by_role("status")).to_have_text("You are signed out")
        sign_in(dana, site, "dana", DANA_PASSWORD)
        expect(dana.get_by_role("heading", name="Enter your code")).to_be_visible()
        expect(dana.locator(".who")).to_have_count(0)
        dana.get_by_label("Code from your authenticator app").fill(phone.code())
        submit(dana, "Sign in")
        assert_signed_in_as(dana, "dana")

        # 3. She uploads a file on her files page and shares it, no password.
        dana.set_input_files(
            "#inputFile",
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"Milk\n"},
        )
        dana.get_by_label("Description").fill("for the team")
        dana.get_by_role("button", name="Upload", exact=True).click()
        expect(dana.locator("#upload-result")).to_contain_text("uploaded successfully")
        file_row = dana.locator("#file-rows tr").filter(has_text="notes.txt")
        expect(file_row).to_have_count(1)
        screenshot(dana, "dana-files")
        follow(dana, "Share notes.txt")
        expect(dana.get_by_role("heading", name="Share notes.txt")).to_be_visible()
        submit(dana, "Create link")
        expect(dana.locator(".flash-success")).to_contain_text("Link created: ")
        links = dana.locator("#share-table tbody tr")
        expect(links).to_have_count(1)
        expect(links.locator("td.status")).to_have_text("active")
        open_link = links.locator("input.share-url").input_value()
        assert requests.get(open_link, timeout=30).status_code == 200

        # 4. The administrator makes every link need a password.
        follow(admin, "Policies", within="Admin area")
        expect(admin.get_by_role("heading", name="Policies")).to_be_visible()
        needs_password = admin.get_by_label("Every link needs a password")
        expect(needs_password).not_to_be_checked()
        needs_password.check()
        submit(admin, "Save policies")
        expect(admin).to_have_url(re.compile(r"/admin/policies(\?|$)"))
        expect(admin.get_by_role("status")).to_contain_text("Policies saved")
        expect(needs_password).to_be_checked()
        screenshot(admin, "admin-policies-saved")

        # 5. dana's next link without a password is refused, saying why; one
        # with a password is made. Her first link no longer opens.
        submit(dana, "Create link", status=400)
        expect(dana.get_by_text(LINKS_NEED_PASSWORD)).to_be_visible()
        expect(dana.locator(".flash-success")).to_have_count(0)
        screenshot(dana, "link-needs-password")
        dana.go_back()
        dana.wait_for_load_state("load")
        expect(dana.get_by_role("heading", name="Share notes.txt")).to_be_visible()
        expect(links).to_have_count(1)
        dana.get_by_label("Password").fill(LINK_PASSWORD)
        submit(dana, "Create link")
        expect(dana.locator(".flash-success")).to_contain_text("Link created: ")
        expect(links).to_have_count(2)
        expect(links.first.locator("td.status")).to_have_text("active · password")
        screenshot(dana, "dana-links")
        stopped = requests.get(open_link, headers={"Accept": "text/html"}, timeout=30)
        assert stopped.status_code == 403
        assert LINKS_NEED_PASSWORD in stopped.text
        follow(dana, "← Your files")
        assert_signed_in_as(dana, "dana")
        expect(file_row).to_have_count(1)

        # 6. The administrator disables dana, from her page in the list.
        follow(admin, "Users", within="Admin area")
        dana_row = user_row(admin, "dana")
        expect(dana_row.locator("td[data-label='Signs in with']")).to_have_text(
            "password, two-factor"
        )
        expect(dana_row.locator("td[data-label=Files]")).to_have_text("1")
        expect(dana_row.locator("td[data-label='Last sign-in'] time")).to_have_count(1)
        expect(admin.get_by_role("heading", name="Invite someone")).to_be_in_viewport()
        screenshot(admin, "admin-users")
        DOCS_PICTURE.parent.mkdir(parents=True, exist_ok=True)
        admin.screenshot(path=str(DOCS_PICTURE))
        follow(admin, "dana")
        expect(admin.get_by_role("heading", name="dana", exact=True)).to_be_visible()
        submit(admin, "Disable dana")
        expect(admin.get_by_role("status")).to_have_text(
            "dana is disabled: nothing of theirs opens now."
        )
        expect(admin.locator("#account-status")).to_contain_text("Disabled")
        expect(admin.get_by_role("button", name="Enable dana")).to_be_visible()
        screenshot(admin, "admin-user-disabled")

        # dana's open files page: the header's next link shows no files, but
        # the sign-in page, saying her account is disabled.
        follow(dana, "Files", within="Account")
        expect(dana).to_have_url(re.compile(r"/login(\?|$)"))
        assert "token=" not in dana.url
        assert_signed_out(dana)
        expect(dana.get_by_text(DISABLED)).to_be_visible()
        expect(dana.get_by_text("notes.txt")).to_have_count(0)
        screenshot(dana, "dana-disabled")
        # Her password no longer signs her in (before any code is asked).
        sign_in(dana, site, "dana", DANA_PASSWORD, status=403)
        expect(dana.get_by_text(DISABLED_AT_SIGN_IN)).to_be_visible()
        expect(dana.get_by_role("heading", name="Enter your code")).to_have_count(0)
        expect(dana.locator(".who")).to_have_count(0)
        screenshot(dana, "dana-disabled-sign-in")
    finally:
        admin_context.close()
        dana_context.close()
