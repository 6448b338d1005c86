"""The pages in a real browser: headless Chromium driven by Playwright."""

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from harness.server import ROOT
from helpers import (
    PASSWORD,
    expired_token,
)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def site(sqlite_site):
    """The running app, shared by this module's tests."""
    return sqlite_site


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install the chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab that accepts downloads and records dialogs."""
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.dialogs = []
    yield page
    context.close()


def screenshot(page, name):
    """Keep a picture of the page for people to look at (test-artifacts/)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, site, password=PASSWORD):
    """Sign in as alice through the sign-in page."""
    page.goto(site.url + "/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(password)
    # Wait for the next page and its script, so that no click races them.
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("load")


def upload_through_page(page, name, content, description=""):
    """Choose a file, press Upload, and wait for the result shown in place."""
    page.set_input_files(
        "#inputFile",
        {"name": name, "mimeType": "application/octet-stream", "buffer": content},
    )
    page.get_by_label("Description").fill(description)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_contain_text("uploaded successfully")


def row_for(page, name):
    """The table row of a file, found by its exact name."""
    return page.locator("#file-rows tr").filter(
        has=page.locator("td.name", has_text=name)
    )


def test_signing_in_through_the_page_opens_the_files(page, site):
    page.goto(site.url + "/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "sign-in")
    sign_in(page, site)
    expect(page.get_by_role("heading", name="Upload a file")).to_be_visible()
    assert "/?token=" in page.url
    expect(page.locator(".who")).to_contain_text("alice")
    screenshot(page, "home")


def test_wrong_password_shows_one_generic_error(page, site):
    sign_in(page, site, password="not the password")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password")
    expect(page.get_by_label("Password")).to_have_value("")
    screenshot(page, "sign-in-failed")


def test_upload_shows_progress_and_the_new_row(page, site):
    sign_in(page, site)
    seen = []
    page.expose_function("recordProgress", lambda value: seen.append(value))
    page.evaluate(
        """() => {
          const bar = document.getElementById('progress-bar');
          new MutationObserver(() => window.recordProgress(bar.value))
            .observe(bar, {attributes: true});
          const text = document.getElementById('progress-text');
          new MutationObserver(() => window.recordProgress(text.textContent))
            .observe(text, {childList: true, characterData: true, subtree: true});
        }"""
    )
    content = os.urandom(24 * 1024 * 1024)
    upload_through_page(page, "progress.bin", content, "watched")
    expect(page.locator("#progress-bar")).to_have_js_property("value", 100)
    expect(page.locator("#progress-text")).to_have_text("100 %")
    assert any(isinstance(v, str) and "/s" in v for v in seen), seen
    row = row_for(page, "progress.bin")
    expect(row).to_have_count(1)
    expect(row.locator("td.description")).to_have_text("watched")
    expect(row.locator("td.num")).to_have_text("24.0 MiB")
    screenshot(page, "uploaded")
    page.reload()
    expect(row_for(page, "progress.bin")).to_have_count(1)


def test_file_downloads_from_the_table_byte_for_byte(page, site, tmp_path):
    sign_in(page, site)
    content = os.urandom(3 * 1024 * 1024 + 17)
    name = f"download-{uuid.uuid4().hex[:6]}.bin"
    upload_through_page(page, name, content)
    with page.expect_download() as info:
        row_for(page, name).get_by_role("link", name="Download").click()
    saved = tmp_path / "saved.bin"
    info.value.save_as(saved)
    assert info.value.suggested_filename == name
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(content).hexdigest()


def test_delete_asks_first_and_keeps_the_file_when_cancelled(page, site):
    sign_in(page, site)
    name = f"keep-{uuid.uuid4().hex[:6]}.txt"
    upload_through_page(page, name, b"keep me")
    page.once(
        "dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss())
    )
    row_for(page, name).get_by_role("button", name="Delete").click()
    assert page.dialogs == [f"Delete {name}?"]
    expect(row_for(page, name)).to_have_count(1)


def test_delete_after_confirming_removes_the_row(page, site):
    sign_in(page, site)
    name = f"gone-{uuid.uuid4().hex[:6]}.txt"
    upload_through_page(page, name, b"delete me")
    page.once("dialog", lambda dialog: dialog.accept())
    row_for(page, name).get_by_role("button", name="Delete").click()
    expect(page.locator(".flash-success")).to_have_text(f"file {name} deleted")
    expect(row_for(page, name)).to_have_count(0)
    screenshot(page, "deleted")


def test_expired_session_goes_to_the_sign_in_page(page, site):
    page.goto(f"{site.url}/?token={expired_token()}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator(".flash-error")).to_have_text(
        "Your session expired — sign in again"
    )
    assert "token=" not in page.url
    screenshot(page, "session-expired")


def test_hostile_filename_is_shown_as_text(page, site):
    page.on(
        "dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss())
    )
    sign_in(page, site)
    name = "<img src=x onerror=alert(1)>.txt"
    upload_through_page(page, name, b"harmless", "<script>alert(2)</script>")
    expect(row_for(page, name)).to_have_count(1)
    page.reload()
    row = row_for(page, name)
    expect(row.locator("td.name")).to_have_text(name)
    expect(row.locator("td.description")).to_have_text("<script>alert(2)</script>")
    assert page.locator("#file-rows img").count() == 0
    assert page.dialogs == []
    screenshot(page, "hostile-filename")


def test_dropping_a_file_on_the_page_uploads_it(page, site):
    sign_in(page, site)
    data_transfer = page.evaluate_handle(
        """() => {
          const transfer = new DataTransfer();
          transfer.items.add(new File(['dropped bytes'], 'dropped.txt'));
          return transfer;
        }"""
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": data_transfer})
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_have_text(
        "file dropped.txt uploaded successfully"
    )


def test_cancel_stops_an_upload_in_flight(page, site):
    sign_in(page, site)
    # Hold the upload request so that it is still in flight when Cancel is pressed.
    held = []
    page.route("**/upload*", lambda route: held.append(route))
    page.set_input_files(
        "#inputFile",
        {
            "name": "cancelled.bin",
            "mimeType": "application/octet-stream",
            "buffer": b"x" * 1024,
        },
    )
    page.get_by_role("button", name="Upload").click()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#upload-result")).to_have_text("Upload cancelled")
    assert len(held) == 1
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    page.reload()
    expect(row_for(page, "cancelled.bin")).to_have_count(0)


def test_upload_form_works_without_javascript(browser, site):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, site)
        page.set_input_files(
            "#inputFile",
            {"name": "plain-form.txt", "mimeType": "text/plain", "buffer": b"no js"},
        )
        page.get_by_role("button", name="Upload").click()
        expect(page.locator(".flash-success")).to_have_text(
            "file plain-form.txt uploaded successfully"
        )
        # Without a script, deleting asks on a page of its own.
        row_for(page, "plain-form.txt").get_by_role("button", name="Delete").click()
        expect(page.get_by_role("heading", name="Delete this file?")).to_be_visible()
        screenshot(page, "confirm-delete")
        page.get_by_role("button", name="Delete").click()
        expect(page.locator(".flash-success")).to_have_text(
            "file plain-form.txt deleted"
        )
    finally:
        context.close()
