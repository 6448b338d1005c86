"""The pages in a real browser: headless Chromium driven by Playwright."""

import base64
import contextlib
import hashlib
import io
import math
import os
import re
import signal
import struct
import time
import uuid
import wave
import zipfile
import zlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests
from playwright.sync_api import expect

from harness.server import LiveServer
from helpers import (
    FREQUENT_SIGN_INS,
    PASSWORD,
    SECRET_KEY,
    AuthActions,
    empty_tables,
    expired_token,
    live_share,
    live_upload,
    make_app,
    screenshot,
)
from models import User, db
from test_notifications import Receiver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(sqlite_site):
    """The running app, shared by this module's tests."""
    return sqlite_site


@pytest.fixture
def page(browser):
    """A fresh browser tab that accepts downloads and records dialogs."""
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.dialogs = []
    yield page
    context.close()


def sign_in(page, site, password=PASSWORD, username="alice", remember=False):
    """Sign in (as alice) through the sign-in page."""
    page.goto(site.url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    if remember:
        page.get_by_label("Keep me signed in").check()
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
        row_for(page, name).get_by_role("link", name=f"Download {name}").click()
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
    row_for(page, name).get_by_role("button", name=f"Delete {name}").click()
    assert page.dialogs == [f"Delete {name}?"]
    expect(row_for(page, name)).to_have_count(1)


def test_delete_after_confirming_removes_the_row(page, site):
    sign_in(page, site)
    name = f"gone-{uuid.uuid4().hex[:6]}.txt"
    upload_through_page(page, name, b"delete me")
    page.once("dialog", lambda dialog: dialog.accept())
    row_for(page, name).get_by_role("button", name=f"Delete {name}").click()
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


# The access token of short_site lives this long; the server accepts a token
# for its leeway (session_tokens.LEEWAY_SECONDS) past that.
SHORT_TOKEN_SECONDS = 2
PAST_A_SHORT_TOKEN = SHORT_TOKEN_SECONDS + 10 + 1.5


@pytest.fixture
def short_site(tmp_path):
    """gunicorn whose page tokens expire after SHORT_TOKEN_SECONDS."""
    url = f"sqlite:///{tmp_path / 'short.db'}"
    app = make_app(url)
    AuthActions(app, app.test_client()).create_user("alice")
    env = {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": url,
        "TOKEN_TTL_SECONDS": str(SHORT_TOKEN_SECONDS),
        **FREQUENT_SIGN_INS,
    }
    with LiveServer(env) as server:
        yield server
    empty_tables(app)


def test_kept_signed_in_the_pages_go_on_past_the_tokens_life(page, short_site):
    sign_in(page, short_site, remember=True)
    expect(page.get_by_role("heading", name="Upload a file")).to_be_visible()
    first = page.url
    page.get_by_role("link", name="API tokens").click()
    page.wait_for_load_state("load")
    time.sleep(PAST_A_SHORT_TOKEN)
    # The page's token has expired: the form does nothing, and the page it
    # came back to (renewed, never the sign-in page) says to submit again.
    page.get_by_label("Name").fill("backup script")
    page.get_by_role("button", name="Create token").click()
    page.wait_for_load_state("load")
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    expect(page.locator(".flash-error")).to_contain_text("Please submit again")
    expect(page.get_by_text("backup script")).to_have_count(0)
    page.get_by_label("Name").fill("backup script")
    page.get_by_role("button", name="Create token").click()
    page.wait_for_load_state("load")
    expect(page.locator("td.name", has_text="backup script")).to_have_count(1)
    # A link of a page left open past the token's life opens its page too.
    time.sleep(PAST_A_SHORT_TOKEN)
    page.get_by_role("link", name="Files", exact=True).click()
    page.wait_for_load_state("load")
    expect(page.get_by_role("heading", name="Upload a file")).to_be_visible()
    assert "token=" in page.url and page.url != first
    # Signing out ends it: an old page's link now leads to the sign-in page.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state("load")
    page.goto(first)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


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
    card = page.locator("#upload-card")
    # Files dragged over any part of the card: the card says it takes them.
    page.dispatch_event("#description", "dragenter", {"dataTransfer": data_transfer})
    expect(card).to_have_class(re.compile(r"\bdragging\b"))
    overlay = card.evaluate("c => getComputedStyle(c, '::after').content")
    assert overlay == '"Drop files to upload them"'
    screenshot(page, "drop-zone")
    # Dropped: they go up at once.
    page.dispatch_event("#description", "drop", {"dataTransfer": data_transfer})
    expect(card).not_to_have_class(re.compile(r"\bdragging\b"))
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
        row_for(page, "plain-form.txt").get_by_role(
            "button", name="Delete plain-form.txt"
        ).click()
        expect(page.get_by_role("heading", name="Delete this file?")).to_be_visible()
        screenshot(page, "confirm-delete")
        page.get_by_role("button", name="Delete").click()
        expect(page.locator(".flash-success")).to_have_text(
            "file plain-form.txt deleted"
        )
    finally:
        context.close()


def test_without_javascript_every_action_still_works(browser, site):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    name = f"nojs-{uuid.uuid4().hex[:6]}.txt"
    try:
        sign_in(page, site, remember=True)
        page.set_input_files(
            "#inputFile",
            {"name": name, "mimeType": "text/plain", "buffer": b"Plain words"},
        )
        page.get_by_role("button", name="Upload").click()
        expect(page.locator(".flash-success")).to_contain_text(name)
        # Search and sort are a plain GET form.
        page.get_by_label("Search by name").fill(name[:10])
        page.get_by_label("Sort by").select_option("name")
        page.get_by_role("button", name="Show").click()
        expect(page.locator("#file-rows tr")).to_have_count(1)
        # The file's page shows its text without a script.
        row_for(page, name).get_by_role("link", name=name, exact=True).click()
        text = page.frame_locator("iframe.preview-text").locator("body")
        expect(text).to_have_text("Plain words")
        # A link: made, opened by someone else, revoked.
        page.get_by_role("link", name=f"Share {name}").click()
        page.locator("#create-share").click()
        expect(page.locator(".flash-success")).to_contain_text("Link created: ")
        url = page.locator("#share-table input.share-url").input_value()
        visitor = browser.new_context(java_script_enabled=False)
        try:
            shared = visitor.new_page()
            shared.goto(url)
            expect(shared.get_by_role("heading", name=name)).to_be_visible()
            page.get_by_role("button", name="Revoke").click()
            shared.reload()
            expect(shared.get_by_role("heading")).not_to_have_text(name)
        finally:
            visitor.close()
        # An API token: made and shown once, then revoked.
        page.get_by_role("link", name="API tokens").click()
        page.get_by_label("Name").fill("no script")
        page.get_by_role("button", name="Create token").click()
        expect(page.locator("#new-token")).to_have_value(TOKEN_PATTERN)
        page.reload()
        expect(page.locator("#new-token")).to_have_count(0)
        row = page.locator("#token-table tr").filter(
            has=page.locator("td.name", has_text="no script")
        )
        row.get_by_role("button", name="Revoke").click()
        expect(page.locator(".flash-success")).to_have_text("Token no script revoked")
        # Signing out, then an old page's URL leads to the sign-in page.
        old = page.url
        page.get_by_role("button", name="Sign out").click()
        expect(page.locator(".flash-success")).to_have_text("You are signed out")
        page.goto(old)
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        context.close()


# --- resumable uploads (tus) ---------------------------------------------------


def throttle_uploads(page, bytes_per_second, offline=False, session=None):
    """Make the browser send request bodies no faster than this (DevTools),
    or (``offline``) not at all; the DevTools session, to change it again."""
    if session is None:
        session = page.context.new_cdp_session(page)
        session.send("Network.enable")
    session.send(
        "Network.emulateNetworkConditions",
        {
            "offline": offline,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )
    return session


def progress_of(page) -> int:
    """The upload page's overall progress, in percent."""
    return page.locator("#progress-bar").evaluate("bar => bar.value")


def wait_for_progress(page, percent, timeout=30):
    """Wait until the overall progress has passed ``percent``."""
    deadline = time.monotonic() + timeout
    while progress_of(page) <= percent:
        assert time.monotonic() < deadline, f"progress stuck at {progress_of(page)}"
        page.wait_for_timeout(50)


def patch_offsets(page) -> list[int]:
    """Start recording the Upload-Offset of every PATCH the page sends."""
    offsets = []

    def seen(request):
        if request.method == "PATCH":
            offsets.append(int(request.headers["upload-offset"]))

    page.on("request", seen)
    return offsets


def downloaded_sha256(page, site, name, tmp_path) -> str:
    """Download a file from the table and hash what arrived."""
    with page.expect_download() as info:
        row_for(page, name).get_by_role("link", name=f"Download {name}").click()
    saved = tmp_path / f"downloaded-{uuid.uuid4().hex[:6]}"
    info.value.save_as(saved)
    return hashlib.sha256(saved.read_bytes()).hexdigest()


@pytest.fixture
def own_site(tmp_path):
    """gunicorn on a database of its own, for a test that stops the server."""
    url = f"sqlite:///{tmp_path / 'own.db'}"
    app = make_app(url)
    AuthActions(app, app.test_client()).create_user("alice")
    server = LiveServer(
        {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": url, **FREQUENT_SIGN_INS}
    )
    with server:
        yield server
    empty_tables(app)


def test_an_upload_survives_the_server_dying_mid_file(page, own_site, tmp_path):
    sign_in(page, own_site)
    source = tmp_path / "survivor.bin"
    source.write_bytes(os.urandom(24 * 1024 * 1024 + 11))
    throttle_uploads(page, 4 * 1024 * 1024)
    offsets = patch_offsets(page)
    page.set_input_files("#inputFile", str(source))
    page.get_by_role("button", name="Upload").click()
    wait_for_progress(page, 15)
    # The connection is cut for real: the server is killed, then comes back.
    os.killpg(own_site.process.pid, signal.SIGKILL)
    own_site.process.wait(timeout=20)
    own_site._collect()
    page.wait_for_timeout(1500)
    own_site.__enter__()
    expect(page.locator("#upload-result")).to_have_text(
        "file survivor.bin uploaded successfully", timeout=90_000
    )
    screenshot(page, "resumed-after-server-restart")
    # After the restart the client went on from the server's offset.
    assert any(offset > 0 for offset in offsets[1:]), offsets
    digest = downloaded_sha256(page, own_site, "survivor.bin", tmp_path)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()


def test_an_upload_resumes_after_a_page_reload(page, site, tmp_path):
    sign_in(page, site)
    source = tmp_path / f"reloaded-{uuid.uuid4().hex[:6]}.bin"
    source.write_bytes(os.urandom(20 * 1024 * 1024 + 3))
    throttle_uploads(page, 4 * 1024 * 1024)
    page.set_input_files("#inputFile", str(source))
    page.get_by_role("button", name="Upload").click()
    wait_for_progress(page, 45)
    page.reload()
    expect(page.locator("#resume-note")).to_contain_text("choose the same file again")
    offsets = patch_offsets(page)
    page.set_input_files("#inputFile", str(source))
    page.get_by_role("button", name="Upload").click()
    # Resumed: it is no longer an interrupted upload.
    expect(page.locator("#resume-note")).to_be_hidden()
    expect(page.locator("#upload-result")).to_have_text(
        f"file {source.name} uploaded successfully", timeout=60_000
    )
    expect(page.locator("#resume-note")).to_be_hidden()
    assert offsets and offsets[0] >= 8 * 1024 * 1024, offsets
    digest = downloaded_sha256(page, site, source.name, tmp_path)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    page.reload()
    expect(page.locator("#resume-note")).to_be_hidden()


def test_offline_an_upload_waits_and_goes_on_when_back_online(page, site, tmp_path):
    sign_in(page, site)
    source = tmp_path / f"offline-{uuid.uuid4().hex[:6]}.bin"
    source.write_bytes(os.urandom(12 * 1024 * 1024 + 5))
    network = throttle_uploads(page, 1024 * 1024)
    page.set_input_files("#inputFile", str(source))
    page.get_by_role("button", name="Upload").click()
    state = page.locator("#upload-list .state")
    # While it goes, it says how long is left.
    expect(state).to_contain_text(re.compile(r"\d+ s left|\d+ min left"))
    wait_for_progress(page, 10)
    throttle_uploads(page, 1024 * 1024, offline=True, session=network)
    expect(state).to_have_text("offline · waiting for the network…", timeout=20_000)
    screenshot(page, "upload-offline")
    time.sleep(2)
    throttle_uploads(page, 4 * 1024 * 1024, session=network)
    expect(page.locator("#upload-result")).to_have_text(
        f"file {source.name} uploaded successfully", timeout=60_000
    )
    digest = downloaded_sha256(page, site, source.name, tmp_path)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()


def test_stored_upload_urls_belong_to_the_account_and_go_with_sign_out(
    page, site, tmp_path
):
    app = make_app(site.env["DATABASE_URL"])
    with app.app_context():
        known = db.session.execute(db.select(User).filter_by(username="bob")).first()
    if known is None:
        AuthActions(app, app.test_client()).create_user("bob")
    sign_in(page, site)
    source = tmp_path / f"shared-machine-{uuid.uuid4().hex[:6]}.bin"
    source.write_bytes(os.urandom(12 * 1024 * 1024))
    throttle_uploads(page, 4 * 1024 * 1024)
    page.set_input_files("#inputFile", str(source))
    page.get_by_role("button", name="Upload").click()
    wait_for_progress(page, 10)
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#upload-list li .state")).to_have_text("paused")
    assert page.evaluate("() => localStorage.length") > 0
    # Bob signs in on the same browser (alice never signed out): nothing of
    # alice's is offered to him, and the same file goes to his account anew.
    sign_in(page, site, username="bob")
    expect(page.locator(".who")).to_contain_text("bob")
    expect(page.locator("#resume-note")).to_be_hidden()
    offsets = patch_offsets(page)
    page.set_input_files("#inputFile", str(source))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_have_text(
        f"file {source.name} uploaded successfully", timeout=60_000
    )
    assert offsets and offsets[0] == 0, offsets
    expect(row_for(page, source.name)).to_have_count(1)
    # Signing out leaves no upload's address behind in the browser.
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    assert page.evaluate("() => Object.keys(localStorage)") == []
    sign_in(page, site)
    expect(row_for(page, source.name)).to_have_count(0)
    expect(page.locator("#resume-note")).to_be_hidden()


def test_several_files_upload_at_once(page, site):
    sign_in(page, site)
    tag = uuid.uuid4().hex[:6]
    files = [
        {
            "name": f"many-{tag}-{n}.bin",
            "mimeType": "application/octet-stream",
            "buffer": os.urandom(300_000 + n),
        }
        for n in range(3)
    ]
    page.set_input_files("#inputFile", files)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_have_text("3 files uploaded successfully")
    expect(page.locator("#upload-list li")).to_have_count(3)
    for file in files:
        expect(row_for(page, file["name"])).to_have_count(1)
    screenshot(page, "several-files")


def test_pause_holds_an_upload_and_resume_finishes_it(page, site, tmp_path):
    sign_in(page, site)
    source = tmp_path / f"paused-{uuid.uuid4().hex[:6]}.bin"
    source.write_bytes(os.urandom(12 * 1024 * 1024))
    throttle_uploads(page, 4 * 1024 * 1024)
    page.set_input_files("#inputFile", str(source))
    page.get_by_role("button", name="Upload").click()
    wait_for_progress(page, 10)
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#upload-list li .state")).to_have_text("paused")
    held_at = progress_of(page)
    page.wait_for_timeout(1000)
    assert progress_of(page) == held_at
    screenshot(page, "paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#upload-result")).to_have_text(
        f"file {source.name} uploaded successfully", timeout=60_000
    )
    digest = downloaded_sha256(page, site, source.name, tmp_path)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()


def test_cancel_terminates_an_upload_on_the_server(page, site, tmp_path):
    sign_in(page, site)
    source = tmp_path / f"terminated-{uuid.uuid4().hex[:6]}.bin"
    source.write_bytes(os.urandom(12 * 1024 * 1024))
    throttle_uploads(page, 2 * 1024 * 1024)
    deletes = []
    page.on(
        "requestfinished",
        lambda request: request.method == "DELETE" and deletes.append(request.url),
    )
    page.set_input_files("#inputFile", str(source))
    page.get_by_role("button", name="Upload").click()
    wait_for_progress(page, 5)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#upload-result")).to_have_text("Upload cancelled")
    page.wait_for_timeout(500)
    assert len(deletes) == 1 and "/uploads/" in deletes[0], deletes
    gone = page.request.head(deletes[0], headers={"Tus-Resumable": "1.0.0"})
    assert gone.status == 404


@contextlib.contextmanager
def alice_quota(site, quota_bytes):
    """Give alice a storage quota for the length of a test."""

    def set_quota(value):
        with app.app_context():
            db.session.execute(
                db.update(User).filter_by(username="alice").values(quota_bytes=value)
            )
            db.session.commit()

    app = make_app(site.env["DATABASE_URL"])
    set_quota(quota_bytes)
    try:
        yield
    finally:
        set_quota(None)
        with app.app_context():
            db.engine.dispose()


def test_the_page_shows_storage_used_against_the_quota(page, site):
    with alice_quota(site, 1024**3):
        sign_in(page, site)
        expect(page.locator("#usage-text")).to_contain_text("of 1.0 GiB used")
        meter = page.locator("#usage-meter")
        expect(meter).to_be_visible()
        screenshot(page, "usage")
        before = meter.evaluate("m => m.value")
        upload_through_page(page, f"counted-{uuid.uuid4().hex[:6]}.bin", b"x" * 2048)
        expect(meter).to_have_js_property("value", before + 2048)


def test_an_upload_over_the_quota_says_so(page, site):
    with alice_quota(site, 1):
        sign_in(page, site)
        page.set_input_files(
            "#inputFile",
            {"name": "too-big.bin", "mimeType": "text/plain", "buffer": b"xx" * 1000},
        )
        page.get_by_role("button", name="Upload").click()
        # Said once, in sizes people read.
        expect(page.locator("#upload-result")).to_have_text(
            re.compile(
                r"^Upload failed: too-big\.bin: Storage quota exceeded: "
                r"[0-9.]+ (B|KiB|MiB|GiB) of 1 B used \([0-9]+ of 1 bytes\)$"
            )
        )
        expect(page.locator("#upload-list .state")).to_have_text("failed")
        screenshot(page, "over-quota")
        expect(row_for(page, "too-big.bin")).to_have_count(0)


# --- share links and API tokens ------------------------------------------------


def test_a_password_link_opens_in_a_fresh_browser_and_dies_when_revoked(
    page, browser, site, tmp_path
):
    sign_in(page, site)
    name = f"shared-{uuid.uuid4().hex[:6]}.bin"
    content = os.urandom(300 * 1024)
    upload_through_page(page, name, content)
    row_for(page, name).get_by_role("link", name=f"Share {name}").click()
    expect(page.get_by_role("heading", name=f"Share {name}")).to_be_visible()
    page.locator("#share-expiry").select_option("86400")
    page.locator("#share-password").fill("correct horse battery")
    page.locator("#create-share").click()
    expect(page.locator(".flash-success")).to_contain_text("Link created: ")
    shares = page.locator("#share-table tr[data-share-id]")
    expect(shares).to_have_count(1)
    expect(shares.locator(".status")).to_have_text("active · password")
    url = shares.locator("input.share-url").input_value()
    assert url.startswith(site.url + "/s/"), url
    expect(page.locator(".flash-success")).to_have_text(f"Link created: {url}")
    screenshot(page, "share-created")

    # Someone else: a browser of their own, never signed in.
    context = browser.new_context(accept_downloads=True)
    try:
        visitor = context.new_page()
        response = visitor.goto(url)
        assert response.status == 401
        expect(visitor.locator("#share-password")).to_be_visible()
        expect(visitor.locator(".file-name")).to_have_count(0)
        expect(visitor.get_by_text(name)).to_have_count(0)
        screenshot(visitor, "share-locked")

        visitor.locator("#share-password").fill("not the password")
        with visitor.expect_navigation() as wrong:
            visitor.locator("#unlock").click()
        assert wrong.value.status == 401
        expect(visitor.get_by_role("alert")).to_have_text(
            "Wrong password for this link"
        )
        expect(visitor.locator(".file-name")).to_have_count(0)

        visitor.locator("#share-password").fill("correct horse battery")
        visitor.locator("#unlock").click()
        expect(visitor.locator(".file-name")).to_have_text(name)
        expect(visitor.locator(".owner")).to_have_text("alice")
        expect(visitor.locator("#share-password")).to_have_count(0)
        screenshot(visitor, "share-open")
        with visitor.expect_download() as info:
            visitor.locator("#share-download").click()
        saved = tmp_path / "shared.bin"
        info.value.save_as(saved)
        assert info.value.suggested_filename == name
        digest = hashlib.sha256(saved.read_bytes()).hexdigest()
        assert digest == hashlib.sha256(content).hexdigest()

        # The owner revokes the link: the visitor's next look finds it gone.
        page.reload()
        expect(shares.locator(".downloads")).to_have_text("1")
        shares.locator("button.revoke-button").click()
        expect(page.locator(".flash-success")).to_have_text("Link revoked")
        expect(shares.locator(".status")).to_have_text("revoked · password")
        expect(shares.locator("button.revoke-button")).to_have_count(0)

        response = visitor.goto(url)
        assert response.status == 410
        expect(visitor.locator(".error-message")).to_have_text(
            "This link was revoked by its owner"
        )
        expect(visitor.get_by_text(name)).to_have_count(0)
        screenshot(visitor, "share-revoked")
        gone = visitor.request.get(url + "/download")
        assert gone.status == 410
    finally:
        context.close()


def tiny_png(width=4, height=3) -> bytes:
    """A real PNG picture, small: a blue rectangle."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x24\x56\xd6" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_one_link_to_several_files_gives_a_visitor_all_of_them_as_a_zip(
    page, browser, site, tmp_path
):
    sign_in(page, site)
    tag = uuid.uuid4().hex[:6]
    alike, photo = f"data-{tag}.bin", f"photo-{tag}.png"
    # Two files named alike (told apart by their sizes) and a picture.
    uploads = [
        (alike, "application/octet-stream", os.urandom(3000)),
        (alike, "application/octet-stream", os.urandom(1000)),
        (photo, "image/png", tiny_png()),
    ]
    page.set_input_files(
        "#inputFile",
        [
            {"name": name, "mimeType": kind, "buffer": content}
            for name, kind, content in uploads
        ],
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_have_text("3 files uploaded successfully")
    # The owner ticks the three and shares them as one link.
    picks = page.get_by_role("checkbox", name=f"Pick {alike}", exact=True)
    expect(picks).to_have_count(2)
    picks.nth(0).check()
    picks.nth(1).check()
    page.get_by_role("checkbox", name=f"Pick {photo}", exact=True).check()
    page.get_by_role("button", name="Share the picked files as one link").click()
    page.wait_for_load_state("load")
    expect(page.get_by_role("heading", name="Links to several files")).to_be_visible()
    expect(page.locator(".picked-files li")).to_have_count(3)
    screenshot(page, "several-picked")
    page.get_by_role("button", name="Create one link to 3 files").click()
    page.wait_for_load_state("load")
    expect(page.locator(".flash-success")).to_contain_text("Link created: ")
    row = page.locator("#share-table tr[data-share-id]").filter(has_text=photo)
    expect(row).to_have_count(1)
    url = row.get_by_role("textbox", name="Link").input_value()
    assert url.startswith(site.url + "/s/"), url
    expect(page.locator(".flash-success")).to_have_text(f"Link created: {url}")
    expect(row.locator(".link-files")).to_contain_text(alike)
    expect(row.locator(".link-files")).to_contain_text(photo)
    screenshot(page, "several-link-created")

    # Someone else, in a browser of their own, never signed in.
    context = browser.new_context(accept_downloads=True)
    try:
        visitor = context.new_page()
        visitor.goto(url)
        visitor.wait_for_load_state("load")
        total = sum(len(content) for _, _, content in uploads)
        heading = visitor.get_by_role("heading", level=1)
        expect(heading).to_have_text(re.compile(r"^3 files, [0-9.]+ (B|KiB)$"))
        expect(heading.locator(".size")).to_have_attribute("title", f"{total} bytes")
        expect(visitor.locator(".owner")).to_have_text("alice")
        rows = visitor.locator("#shared-files tbody tr")
        expect(rows).to_have_count(3)
        expect(
            visitor.get_by_role("link", name=f"Download {alike}", exact=True)
        ).to_have_count(2)
        expect(
            visitor.get_by_role("link", name=f"Download {photo}", exact=True)
        ).to_have_count(1)
        # Only the picture has a preview.
        previews = visitor.get_by_role("link", name=re.compile(r"^Preview "))
        expect(previews).to_have_count(1)
        expect(previews).to_have_accessible_name(f"Preview {photo}")
        screenshot(visitor, "several-share-page")

        # What the zip should hold, in the link's order: a name that repeats
        # gets " (2)" before its extension.
        by_size = {len(content): content for _, _, content in uploads}
        expected = {}
        for n in range(3):
            name = rows.nth(n).locator("td.name").inner_text().strip()
            size = int(rows.nth(n).locator("td.num").get_attribute("title").split()[0])
            if name in expected:
                stem, dot, extension = name.rpartition(".")
                name = f"{stem} (2){dot}{extension}"
            expected[name] = hashlib.sha256(by_size[size]).hexdigest()
        assert set(expected) == {alike, f"data-{tag} (2).bin", photo}, expected

        with visitor.expect_download() as info:
            visitor.get_by_role("link", name="Download all as a zip").click()
        saved = tmp_path / "all.zip"
        info.value.save_as(saved)
        # Its length was known before it began (a HEAD counts nothing).
        head = visitor.request.head(url + "/download")
        assert head.headers["content-type"] == "application/zip"
        assert int(head.headers["content-length"]) == saved.stat().st_size
        assert re.fullmatch(
            r"lockbox-\d{4}-\d{2}-\d{2}\.zip", info.value.suggested_filename
        )
        with zipfile.ZipFile(saved) as archive:
            assert archive.testzip() is None
            unzipped = {
                member.filename: hashlib.sha256(archive.read(member)).hexdigest()
                for member in archive.infolist()
            }
        assert unzipped == expected

        # The picture, shown in the page when asked.
        previews.click()
        visitor.wait_for_load_state("load")
        expect(visitor.locator("#shown-file")).to_have_text(photo)
        assert_previewed(visitor, photo)
    finally:
        context.close()

    # The owner sees who fetched what: the zip, through this link.
    log = page.locator("table.access-log tr.access-download").filter(
        has_text="all 3 files as a zip"
    )
    deadline = time.monotonic() + 10
    while True:
        page.reload()
        page.wait_for_load_state("load")
        if log.count() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    expect(log).to_have_count(1)
    expect(log).to_contain_text("download of all 3 files as a zip")
    expect(row.locator(".downloads")).to_have_text("1")
    screenshot(page, "several-links-fetched")


TOKEN_PATTERN = re.compile(r"^lbx_[0-9A-Za-z]{46}$")


def test_a_token_made_on_the_page_is_shown_once_and_works(page, site):
    sign_in(page, site)
    page.get_by_role("navigation", name="Account").get_by_role(
        "link", name="API tokens"
    ).click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    token_name = f"ci-{uuid.uuid4().hex[:6]}"
    page.locator("#token-name").fill(token_name)
    expect(page.locator("input[name=scopes][value='files:read']")).to_be_checked()
    page.locator("input[name=scopes][value='files:write']").check()
    page.locator("#token-expiry").select_option("604800")
    with page.expect_navigation() as created:
        page.locator("#create-token").click()
    # Post/redirect/get: the page that shows the token came by a GET.
    assert created.value.status == 200
    assert created.value.request.method == "GET"
    assert created.value.request.redirected_from.method == "POST"
    expect(page.locator("#new-token")).to_have_value(TOKEN_PATTERN)
    token = page.locator("#new-token").input_value()
    row = page.locator("#token-table tr[data-token-id]").filter(
        has=page.locator("td.name", has_text=token_name)
    )
    expect(row).to_have_count(1)
    expect(row).to_contain_text("files:read, files:write")
    screenshot(page, "token-created")

    bearer = {"Authorization": f"Bearer {token}"}
    answer = requests.get(f"{site.url}/files", headers=bearer, timeout=30)
    assert answer.status_code == 200, answer.text

    # Reloaded, the page makes no second token and no longer shows this one.
    rows = page.locator("#token-table tr[data-token-id]")
    before = rows.count()
    page.reload()
    page.wait_for_load_state("load")
    expect(page.locator("#new-token")).to_have_count(0)
    expect(rows).to_have_count(before)
    expect(row).to_have_count(1)
    # Opened again, the page names the token but never shows it.
    page.get_by_role("navigation", name="Account").get_by_role(
        "link", name="API tokens"
    ).click()
    expect(page.locator("#new-token")).to_have_count(0)
    expect(row).to_have_count(1)
    assert token not in page.content()
    assert token_name in page.content()
    screenshot(page, "tokens")

    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash-success")).to_have_text(f"Token {token_name} revoked")
    expect(row).to_have_count(0)
    answer = requests.get(f"{site.url}/files", headers=bearer, timeout=30)
    assert answer.status_code == 401, answer.text


# --- phones ---------------------------------------------------------------------

PHONE = {"width": 360, "height": 740}


def assert_no_sideways_scroll(page, what):
    """The page fits the screen's width: nothing makes it scroll sideways."""
    wide = page.evaluate(
        "() => [document.documentElement.scrollWidth,"
        " document.documentElement.clientWidth]"
    )
    assert wide[0] <= wide[1], f"{what}: {wide[0]} px wide on a {wide[1]} px screen"


def test_every_page_fits_a_phone_and_its_tables_become_labelled_cards(
    page, browser, site
):
    page.set_viewport_size(PHONE)
    page.goto(site.url + "/login")
    assert_no_sideways_scroll(page, "sign-in")
    sign_in(page, site)
    # A long name without spaces, a long description, and a link to the file.
    name = "quarterly-report-" + "x" * 60 + ".pdf"
    upload_through_page(page, name, os.urandom(2048), "figures " * 20)
    page.reload()
    assert_no_sideways_scroll(page, "files")
    row = row_for(page, name)
    # The size sits under its own label, read from the column's header.
    size = row.locator("td.num")
    expect(size).to_have_attribute("data-label", "Size")
    label = size.evaluate("td => getComputedStyle(td, '::before').content")
    assert label == '"Size"'
    # Each row's buttons say which file they act on.
    expect(row.get_by_role("button", name=f"Delete {name}")).to_have_count(1)
    screenshot(page, "phone-files")
    # The file's own page, with its long name and digest.
    row.get_by_role("link", name=name, exact=True).click()
    page.wait_for_load_state("load")
    assert_no_sideways_scroll(page, "file page")
    page.go_back()
    page.wait_for_load_state("load")

    row.get_by_role("link", name=f"Share {name}").click()
    page.locator("#create-share").click()
    expect(page.locator(".flash-success")).to_contain_text("Link created: ")
    assert_no_sideways_scroll(page, "shares")
    expect(page.locator("#share-table td.downloads")).to_be_visible()
    screenshot(page, "phone-shares")
    url = page.locator("#share-table input.share-url").input_value()

    page.get_by_role("navigation", name="Account").get_by_role(
        "link", name="API tokens"
    ).click()
    page.locator("#token-name").fill("phone")
    with page.expect_navigation():
        page.locator("#create-token").click()
    assert_no_sideways_scroll(page, "tokens")
    screenshot(page, "phone-tokens")

    visitor_context = browser.new_context(viewport=PHONE)
    try:
        visitor = visitor_context.new_page()
        visitor.goto(url)
        expect(visitor.locator(".digest")).to_be_visible()
        assert_no_sideways_scroll(visitor, "share page")
        screenshot(visitor, "phone-share-page")
        visitor.goto(site.url + "/s/" + "x" * 60)
        assert_no_sideways_scroll(visitor, "error page")
        screenshot(visitor, "phone-error")
    finally:
        visitor_context.close()


# --- themes, times and contrast ---------------------------------------------------


def luminance(rgb: str) -> float:
    """The relative luminance (WCAG) of a computed ``rgb(r, g, b)`` colour."""
    channels = [int(part) / 255 for part in re.findall(r"\d+", rgb)[:3]]
    linear = [
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels
    ]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    """The contrast ratio of two computed colours."""
    light, dark = sorted((luminance(one), luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def style_of(locator, prop):
    """A computed style property of the element."""
    return locator.evaluate(f"e => getComputedStyle(e).{prop}")


def borders_and_focus_stand_out(page):
    """Field borders, the drop zone's and the focus ring: 3:1 at least
    against the card they sit on (WCAG 1.4.11)."""
    card = style_of(page.locator("section.card").first, "backgroundColor")
    for selector in ("#description", "#inputFile"):
        border = style_of(page.locator(selector), "borderTopColor")
        assert contrast(border, card) >= 3, (selector, border, card)
    # The drop zone's outline, drawn over the card while files are dragged.
    zone = page.locator("#upload-card").evaluate(
        "c => { c.classList.add('dragging');"
        " const s = getComputedStyle(c, '::after');"
        " const colours = [s.borderTopColor, s.backgroundColor];"
        " c.classList.remove('dragging'); return colours; }"
    )
    assert contrast(zone[0], zone[1]) >= 3, zone
    assert contrast(zone[0], card) >= 3, (zone, card)
    page.locator("#description").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    ring = style_of(page.locator("#description"), "outlineColor")
    assert contrast(ring, card) >= 3, (ring, card)


def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(browser, site):
    context = browser.new_context(color_scheme="dark", timezone_id="Asia/Tokyo")
    try:
        page = context.new_page()
        sign_in(page, site)
        body = style_of(page.locator("html"), "backgroundColor")
        assert luminance(body) < 0.1, body
        text = style_of(page.locator("h1, h2").first, "color")
        assert contrast(text, body) >= 4.5
        borders_and_focus_stand_out(page)
        screenshot(page, "dark-files")

        toggle = page.get_by_role("button", name="Dark mode")
        expect(toggle).to_have_attribute("aria-pressed", "true")
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "false")
        assert luminance(style_of(page.locator("html"), "backgroundColor")) > 0.8
        # Kept: the next page opens light although the system is dark.
        page.reload()
        expect(page.get_by_role("button", name="Dark mode")).to_have_attribute(
            "aria-pressed", "false"
        )
        assert luminance(style_of(page.locator("html"), "backgroundColor")) > 0.8
        borders_and_focus_stand_out(page)
    finally:
        context.close()


def test_times_show_in_the_readers_own_time_zone(browser, site):
    context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    try:
        page = context.new_page()
        sign_in(page, site)
        name = f"when-{uuid.uuid4().hex[:6]}.txt"
        upload_through_page(page, name, b"tick")
        page.reload()
        when = row_for(page, name).locator("time")
        utc = datetime.fromisoformat(when.get_attribute("datetime")).replace(tzinfo=UTC)
        tokyo = utc.astimezone(timezone(timedelta(hours=9)))
        # Shown in Tokyo's time, the UTC kept in the tooltip.
        expect(when).to_contain_text(tokyo.strftime("%H:%M"))
        expect(when).to_have_attribute("title", utc.strftime("%Y-%m-%d %H:%M") + " UTC")
    finally:
        context.close()


# --- the keyboard alone ----------------------------------------------------------


def tab_to(page, name, limit=60):
    """Press Tab until the focused element's accessible name (or, for a
    field, its label) is ``name``; the presses it took."""
    seen = []
    for presses in range(1, limit + 1):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const e = document.activeElement;"
            " const label = e.labels && e.labels[0] ? e.labels[0].innerText : '';"
            " return (e.getAttribute('aria-label') || label || e.innerText"
            " || e.value || '').trim(); }"
        )
        focused = " ".join(focused.split())
        seen.append(focused[:40])
        if focused == name:
            return presses
    raise AssertionError(f"{name!r} never took the focus: {seen}")


def test_sign_in_upload_share_and_sign_out_with_the_keyboard_alone(page, site):
    page.goto(site.url + "/login")
    # The first stop is the skip link, straight to the page's content.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the page")).to_be_focused()
    tab_to(page, "Username")
    page.keyboard.type("alice")
    tab_to(page, "Password")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    # The page's script too, so that Upload is the script's, as for a person.
    page.wait_for_load_state("load")
    expect(page.get_by_role("heading", name="Upload a file")).to_be_visible()

    name = f"keys-{uuid.uuid4().hex[:6]}.txt"
    # A listener from now on has Chromium intercept the file chooser well
    # before the key press: the one expect_file_chooser adds asks for it on
    # its own, asynchronously, and a quick Space could open the (headless,
    # invisible) native chooser first.
    page.on("filechooser", lambda chooser: None)
    tab_to(page, "File")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(
        {"name": name, "mimeType": "text/plain", "buffer": b"typed, not clicked"}
    )
    tab_to(page, "Upload")
    page.keyboard.press("Enter")
    expect(page.locator("#upload-result")).to_contain_text("uploaded successfully")

    tab_to(page, f"Share {name}")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_load_state("load")
    tab_to(page, "Create link")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_load_state("load")
    # What the page says after the action has the focus.
    expect(page.locator(".flash-success")).to_be_focused()
    expect(page.locator(".flash-success")).to_contain_text("Link created: ")

    page.keyboard.press("Shift+Tab")
    tab_to(page, "Sign out")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator(".flash-success")).to_have_text("You are signed out")


# --- previews -------------------------------------------------------------------


def sample_files(browser) -> dict[str, tuple[bytes, str]]:
    """One file of each kind a page shows: name -> (bytes, content type). The
    picture, the PDF and the film are made by Chromium itself."""
    page = browser.new_page()
    try:
        page.set_content(
            "<body style='background:#2456d6;color:#fff;font:48px sans-serif'>"
            "<h1>Lockbox preview</h1></body>"
        )
        picture = page.screenshot()
        document = page.pdf()
        film = base64.b64decode(page.evaluate(RECORD_A_FILM))
    finally:
        page.close()
    sound = io.BytesIO()
    with wave.open(sound, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        tone = (int(8000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(4000))
        out.writeframes(b"".join(struct.pack("<h", v) for v in tone))
    return {
        "picture.png": (picture, "image/png"),
        "film.webm": (film, "video/webm"),
        "sound.wav": (sound.getvalue(), "audio/wav"),
        "document.pdf": (document, "application/pdf"),
        "notes.txt": (b"Shopping list\n- bread\n- milk\n", "text/plain"),
    }


# Half a second of a canvas, recorded as WebM by the browser.
RECORD_A_FILM = """async () => {
  const canvas = document.createElement("canvas");
  canvas.width = 160; canvas.height = 120;
  const context = canvas.getContext("2d");
  const stream = canvas.captureStream(25);
  const recorder = new MediaRecorder(stream, {mimeType: "video/webm"});
  const parts = [];
  recorder.ondataavailable = (event) => parts.push(event.data);
  const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
  recorder.start();
  for (let frame = 0; frame < 15; frame += 1) {
    context.fillStyle = frame % 2 ? "#2456d6" : "#17663a";
    context.fillRect(0, 0, 160, 120);
    await new Promise((resolve) => setTimeout(resolve, 40));
  }
  recorder.stop();
  await stopped;
  const bytes = new Uint8Array(await new Blob(parts).arrayBuffer());
  let text = "";
  bytes.forEach((byte) => { text += String.fromCharCode(byte); });
  return btoa(text);
}"""


def alice_token(site) -> str:
    """A fresh API session token of alice's."""
    answer = requests.get(site.url + "/login", auth=("alice", PASSWORD), timeout=30)
    return answer.json()["token"]


def until(probe, what, timeout=15.0):
    """Wait until ``probe()`` is true (a media element is ready...)."""
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def assert_previewed(page, name):
    """The file of this sample's kind is shown in the page, for real."""
    if name.endswith(".png"):
        picture = page.locator("img.preview-media")
        until(lambda: picture.evaluate("i => i.complete && i.naturalWidth") > 0, name)
    elif name.endswith((".webm", ".wav")):
        media = page.locator("video.preview-media, audio.preview-audio")
        until(lambda: media.evaluate("m => m.readyState") >= 1, name)
        assert media.evaluate("m => m.error === null")
    elif name.endswith(".pdf"):
        expect(page.locator(".preview-pdf")).to_have_attribute("data-rendered", "1")
        expect(page.locator(".preview-pdf canvas")).to_have_count(1)
        expect(page.locator(".pdf-note")).to_have_text("1 page")
    else:
        text = page.frame_locator("iframe.preview-text").locator("body")
        expect(text).to_contain_text("Shopping list")


def test_each_kind_of_file_shows_on_its_page_and_on_its_share_page(browser, page, site):
    token = alice_token(site)
    sign_in(page, site)
    for name, (content, content_type) in sample_files(browser).items():
        file_id = live_upload(site, token, name, content, content_type)
        page.get_by_role("link", name="Files", exact=True).click()
        page.wait_for_load_state("load")
        row_for(page, name).get_by_role("link", name=name, exact=True).click()
        page.wait_for_load_state("load")
        expect(page.get_by_role("heading", name=name)).to_be_visible()
        assert_previewed(page, name)
        screenshot(page, f"preview-{name.replace('.', '-')}")
        link = live_share(site, token, file_id)["url"]
        visitor = browser.new_context()
        try:
            shared = visitor.new_page()
            shared.goto(link)
            expect(shared.get_by_role("heading", name=name)).to_be_visible()
            assert_previewed(shared, name)
        finally:
            visitor.close()


HOSTILE = {
    "evil.html": (
        b"<script>document.title='pwned';alert('html')</script>"
        b"<img src=x onerror=\"alert('img')\">",
        "text/html",
    ),
    "evil.svg": (
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(\'svg\')">'
        b"<script>alert('svg script')</script></svg>",
        "image/svg+xml",
    ),
}


def test_hostile_html_and_svg_never_run_whatever_way_they_are_opened(browser, site):
    token = alice_token(site)
    context = browser.new_context()
    page = context.new_page()
    dialogs = []
    context.on("page", lambda opened: opened.on("dialog", dialogs.append))
    page.on("dialog", lambda dialog: (dialogs.append(dialog), dialog.dismiss()))
    try:
        for name, (content, content_type) in HOSTILE.items():
            file_id = live_upload(site, token, name, content, content_type)
            link = live_share(site, token, file_id)["url"]
            inline = f"{site.url}/files/{file_id}/download?inline=1&token={token}"
            for url in (
                f"{site.url}/files/{file_id}/preview?token={token}",
                link,
                inline,
                link + "/download?inline=1",
            ):
                page.goto(url)
                page.wait_for_load_state("load")
                time.sleep(0.3)
                assert page.title() != "pwned", url
            # The page shows the source as text.
            page.goto(f"{site.url}/files/{file_id}/preview?token={token}")
            source = page.frame_locator("iframe.preview-text").locator("body")
            expect(source).to_contain_text("<script>")
        assert dialogs == []
    finally:
        context.close()


# --- upload requests ----------------------------------------------------------------


def test_a_guest_sends_a_big_file_that_survives_a_cut_and_the_owner_sees_it(
    browser, page, site, tmp_path
):
    sign_in(page, site)
    page.get_by_role("link", name="Requests", exact=True).click()
    page.get_by_label("What you ask for").fill("Holiday videos")
    page.get_by_label("A note for them").fill("The long one from the beach, please")
    page.get_by_role("button", name="Create request").click()
    expect(page.locator(".flash-success")).to_contain_text("Request created: ")
    row = page.locator("#request-table tr").filter(has_text="Holiday videos")
    link = row.locator("input.request-url").input_value()
    screenshot(page, "requests")

    source = tmp_path / "beach.mp4"
    source.write_bytes(os.urandom(50 * 1000 * 1000))
    guest_context = browser.new_context()
    try:
        guest = guest_context.new_page()
        guest.goto(link)
        expect(guest.get_by_role("heading", name="Holiday videos")).to_be_visible()
        expect(guest.get_by_text("The long one from the beach, please")).to_be_visible()
        # Nothing of the owner's is on the guest's page.
        assert "Your files" not in guest.content()
        network = throttle_uploads(guest, 8 * 1024 * 1024)
        guest.set_input_files("#inputFile", str(source))
        guest.get_by_role("button", name="Send").click()
        wait_for_progress(guest, 30)
        # The connection is cut mid-file, then comes back: it goes on.
        offsets = patch_offsets(guest)
        throttle_uploads(guest, 8 * 1024 * 1024, offline=True, session=network)
        expect(guest.locator("#upload-list .state")).to_have_text(
            "offline · waiting for the network…", timeout=20_000
        )
        time.sleep(1)
        throttle_uploads(guest, 16 * 1024 * 1024, session=network)
        expect(guest.locator("#upload-result")).to_have_text(
            "file beach.mp4 uploaded successfully", timeout=90_000
        )
        assert offsets and offsets[0] > 0, offsets
        screenshot(guest, "request-guest-sent")
    finally:
        guest_context.close()

    page.reload()
    received = row.locator("td.received")
    expect(received).to_contain_text("beach.mp4")
    expect(received).to_contain_text("47.7 MiB")
    # Who sent what: the pieces before and after the cut, the last one
    # completing the file.
    log = page.locator("table.access-log tr.access-upload").filter(has_text="beach.mp4")
    expect(log.first).to_contain_text("Holiday videos")
    assert log.count() >= 2
    expect(log.filter(has_text="(not finished)")).to_have_count(log.count() - 1)
    received.get_by_role("link", name="beach.mp4").click()
    page.wait_for_load_state("load")
    expect(page.get_by_role("heading", name="beach.mp4")).to_be_visible()
    digest = page.locator(".digest").inner_text()
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()


# --- webhooks -------------------------------------------------------------------------


def open_webhooks(page):
    """The page of webhooks, through the header's link to it."""
    page.get_by_role("navigation", name="Account").locator(
        "a[href^='/webhooks']"
    ).click()
    expect(page.locator("#webhook-form")).to_be_visible()


def delivery_row(page, event):
    """The row of a delivery in the deliveries table, found by its event."""
    return page.locator("table.deliveries tbody tr").filter(
        has=page.get_by_role("cell", name=event, exact=True)
    )


def test_a_webhook_added_on_the_page_hears_a_request_filled_signed(browser, page, site):
    receiver = Receiver()
    try:
        sign_in(page, site)
        open_webhooks(page)
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
        page.locator("#webhook-url").fill(receiver.url)
        # Every event is ticked to begin with.
        boxes = page.locator("#webhook-form input[name=events]")
        assert boxes.count() >= 2
        for box in boxes.all():
            expect(box).to_be_checked()
        page.get_by_role("button", name="Add webhook").click()
        expect(page.get_by_role("heading", name="Its signing secret")).to_be_visible()
        secret = page.get_by_label("Signing secret").input_value()
        assert secret.startswith("whsec_"), secret
        card = page.locator("section.webhook").filter(has_text=receiver.url)
        expect(card).to_have_count(1)
        expect(card).to_contain_text("Nothing sent yet.")
        screenshot(page, "webhook-added")

        # An upload request that one file fills.
        page.get_by_role("link", name="Requests", exact=True).click()
        title = f"Signed form {uuid.uuid4().hex[:6]}"
        page.get_by_label("What you ask for").fill(title)
        page.get_by_label("At most this many files").fill("1")
        page.get_by_role("button", name="Create request").click()
        expect(page.locator(".flash-success")).to_contain_text("Request created: ")
        row = page.locator("#request-table tr").filter(has_text=title)
        link = row.locator("input.request-url").input_value()

        guest_context = browser.new_context()
        try:
            guest = guest_context.new_page()
            guest.goto(link)
            expect(guest.get_by_role("heading", name=title)).to_be_visible()
            guest.set_input_files(
                "#inputFile",
                {
                    "name": "form.pdf",
                    "mimeType": "application/pdf",
                    "buffer": b"%PDF-1.4 signed",
                },
            )
            guest.get_by_role("button", name="Send").click()
            expect(guest.locator("#upload-result")).to_have_text(
                "file form.pdf uploaded successfully", timeout=30_000
            )
        finally:
            guest_context.close()

        # The owner's page shows the delivery within seconds: sent, answered 204.
        open_webhooks(page)
        filled = delivery_row(page, "request.filled")
        deadline = time.monotonic() + 20
        while not (
            filled.count() == 1
            and filled.locator("td.status").inner_text() == "delivered"
        ):
            assert time.monotonic() < deadline, page.locator("table.deliveries").all()
            time.sleep(0.5)
            page.reload()
        expect(filled.get_by_role("cell").nth(4)).to_have_text("204")
        expect(filled.locator("td.num")).to_have_text("1")
        expect(
            filled.get_by_role("button", name=re.compile("^Send again"))
        ).to_be_visible()
        # The secret was shown once, and is not shown again.
        expect(page.get_by_role("heading", name="Its signing secret")).to_have_count(0)
        assert secret not in page.content()
        screenshot(page, "webhook-delivered")

        # The receiver got it, signed with the secret the page showed.
        bodies = receiver.bodies(secret)
        filled_bodies = [body for body in bodies if body["type"] == "request.filled"]
        assert len(filled_bodies) == 1, bodies
        assert filled_bodies[0]["data"]["request"]["title"] == title
        headers = next(
            headers
            for headers, body in receiver.received
            if b'"request.filled"' in body
        )
        assert headers["webhook-id"].startswith("msg_")

        # Deleted, it hears nothing more of this module's tests.
        card.get_by_role("button", name=f"Delete {receiver.url}").click()
        expect(page.locator(".flash-success")).to_have_text("Webhook deleted")
        expect(
            page.locator("section.webhook").filter(has_text=receiver.url)
        ).to_have_count(0)
    finally:
        receiver.close()
