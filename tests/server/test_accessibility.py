"""axe-core's WCAG 2.1 A and AA rules find nothing on any page, at a phone's
and a desktop's width, in the light and the dark theme (axe_pages.mjs runs
@axe-core/playwright in Debian's Chromium)."""

import json
import subprocess
import time
from pathlib import Path

import pyotp
import pytest
import requests

from harness.server import ROOT
from helpers import PASSWORD, AuthActions, bearer, live_share, live_upload, make_app
from models import User, db
from test_notifications import Receiver

AXE = Path(__file__).with_name("axe_pages.mjs")

pytestmark = pytest.mark.slow


def add_webhook(site, token, url) -> int:
    """A webhook of alice's to ``url`` (through the API: its secret goes unseen)."""
    answer = requests.post(
        site.url + "/webhooks",
        json={"url": url, "events": ["link.downloaded", "request.filled"]},
        headers=bearer(token),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def wait_for_attempts(site, token, webhook_ids, seconds=20.0) -> None:
    """Until each webhook's deliveries have all been tried at least once."""
    deadline = time.monotonic() + seconds
    for webhook_id in webhook_ids:
        while True:
            items = requests.get(
                f"{site.url}/webhooks/{webhook_id}/deliveries",
                headers=bearer(token),
                timeout=30,
            ).json()["items"]
            if items and all(item["attempts"] for item in items):
                break
            assert time.monotonic() < deadline, items
            time.sleep(0.2)


def pages_of(site, receiver) -> list[dict]:
    """Every kind of page, with what it shows: a signed-in account with a
    file, its links and a token; an open and a locked share page; an error;
    a link to several files, on its owner's page and on its visitor's;
    webhooks, one whose receiver answered and one that nothing answers."""
    token = requests.get(site.url + "/login", auth=("alice", PASSWORD), timeout=30)
    token = token.json()["token"]
    # Nothing listens on a port just closed: its deliveries fail and wait.
    silent = Receiver()
    silent.close()
    webhook_ids = [
        add_webhook(site, token, silent.url),
        add_webhook(site, token, receiver.url),
    ]
    made = requests.post(
        site.url + "/upload",
        files={"inputFile": ("report.pdf", b"%PDF-1.4 figures")},
        data={"description": "Q3 figures"},
        headers=bearer(token),
        timeout=30,
    ).json()
    file_id = made["id"]

    def share(**settings) -> str:
        answer = requests.post(
            f"{site.url}/files/{file_id}/shares",
            json=settings,
            headers=bearer(token),
            timeout=30,
        )
        return answer.json()["url"]

    open_link, locked_link = share(), share(password="correct horse")
    picture = (ROOT / "docs" / "screenshots" / "files-phone.png").read_bytes()
    picture_id = live_upload(site, token, "phone.png", picture, "image/png")
    notes_id = live_upload(site, token, "notes.txt", b"Milk\nBread\n", "text/plain")
    one_time = live_share(site, token, picture_id, max_downloads=1)["url"]

    def ask(**settings) -> str:
        answer = requests.post(
            site.url + "/requests",
            json={"title": "Holiday photos", "note": "From the trip", **settings},
            headers=bearer(token),
            timeout=30,
        )
        return answer.json()["url"]

    open_request, locked_request = ask(max_files=5), ask(password="correct horse")
    # One link to three files, fetched once as a zip: its owner's page has a
    # link and a row in its access log.
    several = requests.post(
        site.url + "/shares",
        json={"file_ids": [file_id, picture_id, notes_id]},
        headers=bearer(token),
        timeout=30,
    ).json()["url"]
    zipped = requests.get(several + "/download", timeout=30)
    assert zipped.status_code == 200, zipped.text
    wait_for_attempts(site, token, webhook_ids)
    requests.post(
        site.url + "/tokens",
        json={"name": "backup", "scopes": ["files:read"]},
        headers=bearer(token),
        timeout=30,
    )
    return [
        {"name": "sign-in", "url": site.url + "/login"},
        {"name": "files", "url": f"{site.url}/?token={token}"},
        {"name": "links", "url": f"{site.url}/files/{file_id}/shares?token={token}"},
        {"name": "tokens", "url": f"{site.url}/tokens?token={token}"},
        {"name": "share", "url": open_link},
        {"name": "locked share", "url": locked_link},
        {"name": "error", "url": site.url + "/s/" + "x" * 60},
        {
            "name": "picture",
            "url": f"{site.url}/files/{picture_id}/preview?token={token}",
        },
        {"name": "text", "url": f"{site.url}/files/{notes_id}/preview?token={token}"},
        {"name": "one-time share", "url": one_time},
        {"name": "requests", "url": f"{site.url}/requests?token={token}"},
        {"name": "upload request", "url": open_request},
        {"name": "locked upload request", "url": locked_request},
        # With files picked for a new link too: its form shows above them.
        {
            "name": "several links",
            "url": f"{site.url}/shares?file_ids={file_id}&file_ids={notes_id}"
            f"&token={token}",
        },
        {"name": "several share", "url": several},
        {"name": "webhooks", "url": f"{site.url}/webhooks?token={token}"},
        *two_factor_pages(site, token),
        *admin_pages(site, token),
    ]


def two_factor_pages(site, token) -> list[dict]:
    """Alice's account page (two-factor sign-in off), the pages that answer
    its forms: setting it up (the QR code) and the recovery codes once it is
    on (then turned off again with one of them, for the next width and
    theme); and the sign-in page's second step, asking for the code of an
    account that has it on, plain and after a wrong code."""
    account = f"{site.url}/account?token={token}"
    with_code = "tess"
    app = make_app(site.env["DATABASE_URL"])
    AuthActions(app, None).create_user(with_code)
    with app.app_context():
        db.engine.dispose()
    tess = requests.get(site.url + "/login", auth=(with_code, PASSWORD), timeout=30)
    tess = tess.json()["token"]
    begun = requests.post(
        site.url + "/account/two-factor",
        json={"password": PASSWORD},
        headers=bearer(tess),
        timeout=30,
    )
    code = pyotp.TOTP(begun.json()["secret"]).now()
    turned_on = requests.post(
        site.url + "/account/two-factor/confirm",
        json={"code": code},
        headers=bearer(tess),
        timeout=30,
    )
    assert turned_on.status_code == 200, turned_on.text
    set_up = [
        {"fill": "Your password", "value": PASSWORD},
        {"click": "Set up two-factor sign-in"},
    ]
    password_step = [
        {"fill": "Username", "value": with_code},
        {"fill": "Password", "value": PASSWORD},
        {"click": "Sign in"},
    ]
    return [
        {"name": "account", "url": account},
        {"name": "two-factor setup", "url": account, "steps": set_up},
        {
            "name": "recovery codes",
            "url": account,
            "steps": [
                *set_up,
                {"fill": "Code", "totpOf": "#totp-secret"},
                {"click": "Turn on"},
            ],
            "undo": [
                {"remember": "code", "textOf": "#recovery-codes code"},
                {"click": "Back to your account", "role": "link"},
                {"fill": "Password", "value": PASSWORD},
                {"fill": "Code", "remembered": "code"},
                {"click": "Turn two-factor sign-in off"},
            ],
        },
        {"name": "sign-in code", "url": site.url + "/login", "steps": password_step},
        {
            "name": "sign-in wrong code",
            "url": site.url + "/login",
            "steps": [
                *password_step,
                # Wrong whatever the clock says: codes are digits.
                {"fill": "Code from your authenticator app", "value": "abcdef"},
                {"click": "Sign in"},
            ],
        },
    ]


def admin_pages(site, token) -> list[dict]:
    """The admin area, alice made an administrator: the accounts (one
    invited, one disabled), her own page and another's, the link a reset
    shows, everything shared, the policies, the audit log; and the page an
    invitation's link opens, plain and after two passwords that differ."""
    app = make_app(site.env["DATABASE_URL"])
    with app.app_context():
        db.session.execute(
            db.update(User).filter_by(username="alice").values(role="admin")
        )
        db.session.commit()
        db.engine.dispose()

    def invite(username, **settings) -> dict:
        answer = requests.post(
            site.url + "/admin/users",
            json={"username": username, **settings},
            headers=bearer(token),
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        return answer.json()

    invitation = invite("dave", email="dave@example.org")["invitation"]["url"]
    erin = invite("erin", quota="5 GiB")["user"]["id"]
    frank = invite("frank", role="admin")["user"]["id"]
    disabled = requests.post(
        f"{site.url}/admin/users/{frank}/disable", headers=bearer(token), timeout=30
    )
    assert disabled.status_code == 200, disabled.text
    admin = f"{site.url}/admin/{{}}?token={token}"
    return [
        {"name": "admin users", "url": admin.format("users")},
        {"name": "admin own account", "url": admin.format("users/1")},
        {"name": "admin disabled account", "url": admin.format(f"users/{frank}")},
        {
            "name": "admin invitation link",
            "url": admin.format(f"users/{erin}"),
            "steps": [{"click": "New invitation link"}],
        },
        {"name": "admin shared", "url": admin.format("shared")},
        {"name": "admin policies", "url": admin.format("policies")},
        {"name": "admin audit log", "url": admin.format("audit")},
        {"name": "invitation", "url": invitation},
        {
            "name": "invitation passwords differ",
            "url": invitation,
            "steps": [
                {"fill": "New password", "value": "correct horse 1"},
                {"fill": "The same password again", "value": "correct horse 2"},
                {"click": "Set password"},
            ],
        },
    ]


def test_no_page_breaks_a_wcag_rule(sqlite_site):
    # Each page checked is also kept as a picture in test-artifacts/, at each
    # width and in each theme, for people to look at.
    receiver = Receiver()
    try:
        pages = pages_of(sqlite_site, receiver)
        done = subprocess.run(
            ["node", str(AXE), json.dumps(pages)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    # Every page, at both widths, in both themes.
    assert len(results) == len(pages) * 4
    broken = [result for result in results if result["violations"]]
    assert broken == [], json.dumps(broken, indent=1)
