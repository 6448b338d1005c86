"""The access log: who fetched what through a share link, who sent what
through an upload request; shown to the owner, forgotten after
ACCESS_LOG_DAYS."""

from datetime import timedelta

import pytest

from helpers import (
    CHUNK,
    HTML,
    bearer,
    send_piece,
    tus_headers,
    tus_metadata,
    uploaded,
)
from models import AccessEvent, db, utcnow

BROWSER = {"User-Agent": "Mozilla/5.0 (Phone) Test"}


def log_of(client, token, share_id) -> list[dict]:
    """A link's access log, as the API gives it."""
    answer = client.get(f"/shares/{share_id}/accesses", headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["items"]


def make_link(client, token, file_id, **settings) -> dict:
    """A new share link; its JSON."""
    answer = client.post(
        f"/files/{file_id}/shares", json=settings, headers=bearer(token)
    )
    assert answer.status_code == 201
    return answer.get_json()


def path_of(link: dict) -> str:
    """The link's path."""
    return link["url"].removeprefix("http://localhost")


def test_each_download_resume_and_preview_is_a_row(app, client, token):
    content = b"0123456789" * 300
    file_id = uploaded(client, token, content, "report.pdf")["id"]
    link = make_link(client, token, file_id)
    visitor = app.test_client()
    # The server closes each answer once it has gone out: then the row is
    # written.
    whole = visitor.get(path_of(link) + "/download", headers=BROWSER)
    assert whole.data == content
    whole.close()
    part = visitor.get(
        path_of(link) + "/download", headers={**BROWSER, "Range": "bytes=1000-"}
    )
    assert part.status_code == 206
    part.close()
    visitor.get(path_of(link) + "/download?inline=1", headers=BROWSER).close()
    visitor.head(path_of(link) + "/download").close()  # sends nothing: no row
    rows = log_of(client, token, link["id"])
    assert [(row["action"], row["bytes"], row["completed"]) for row in rows] == [
        ("preview", 3000, True),
        ("resume", 2000, True),
        ("download", 3000, True),
    ]
    assert {row["what"] for row in rows} == {"report.pdf"}
    assert {row["user_agent"] for row in rows} == {"Mozilla/5.0 (Phone) Test"}
    assert {row["address"] for row in rows} == {"127.0.0.1"}


@pytest.mark.parametrize("app_settings", [{"CHUNK_SIZE": CHUNK}])
def test_a_download_cut_short_says_so(app, client, token):
    content = b"x" * 5000
    file_id = uploaded(client, token, content, "big.bin")["id"]
    link = make_link(client, token, file_id)
    answer = app.test_client().get(path_of(link) + "/download", buffered=False)
    body = iter(answer.response)
    next(body)  # the first piece only, then the client goes
    answer.close()
    (row,) = log_of(client, token, link["id"])
    assert row["action"] == "download" and row["completed"] is False
    assert 0 < row["bytes"] < 5000


def test_what_a_guest_sends_is_a_row_of_the_request(app, client, token):
    made = client.post(
        "/requests", json={"title": "Scans"}, headers=bearer(token)
    ).get_json()
    link = made["url"].removeprefix("http://localhost")
    guest = app.test_client()
    created = guest.post(
        f"{link}/uploads",
        headers=tus_headers(
            Upload_Length=300, Upload_Metadata=tus_metadata(filename="scan.pdf")
        ),
    )
    upload = created.headers["Location"].removeprefix("http://localhost")
    assert send_piece(guest, upload, 0, b"x" * 100).status_code == 204
    assert send_piece(guest, upload, 100, b"x" * 200).status_code == 204
    answer = client.get(f"/requests/{made['id']}/accesses", headers=bearer(token))
    rows = answer.get_json()["items"]
    assert [(row["action"], row["bytes"], row["completed"]) for row in rows] == [
        ("upload", 200, True),
        ("upload", 100, False),
    ]
    page = client.get(f"/requests?token={token}", headers=HTML).get_data(True)
    assert "Who sent what" in page and "scan.pdf" in page


def test_the_owner_sees_the_log_on_the_links_page(app, client, token):
    file_id = uploaded(client, token, b"hello", "hello.txt")["id"]
    link = make_link(client, token, file_id)
    app.test_client().get(path_of(link) + "/download", headers=BROWSER).close()
    page = client.get(f"/files/{file_id}/shares?token={token}", headers=HTML)
    text = page.get_data(as_text=True)
    assert "Who fetched it" in text and "Mozilla/5.0 (Phone) Test" in text
    assert "download of" in text and "link 1" in text


def test_another_accounts_log_is_not_found(client, auth, token):
    file_id = uploaded(client, token)["id"]
    link = make_link(client, token, file_id)
    made = client.post(
        "/requests", json={"title": "x"}, headers=bearer(token)
    ).get_json()
    auth.create_user("bob")
    bob = bearer(auth.token("bob"))
    assert client.get(f"/shares/{link['id']}/accesses", headers=bob).status_code == 404
    assert (
        client.get(f"/requests/{made['id']}/accesses", headers=bob).status_code == 404
    )


@pytest.mark.parametrize("app_settings", [{"ACCESS_LOG_DAYS": 30}])
def test_files_gc_forgets_rows_older_than_access_log_days(app, client, runner, token):
    file_id = uploaded(client, token, b"hello")["id"]
    link = make_link(client, token, file_id)
    visitor = app.test_client()
    visitor.get(path_of(link) + "/download").close()
    visitor.get(path_of(link) + "/download").close()
    with app.app_context():
        oldest = (
            db.session.execute(db.select(AccessEvent).order_by(AccessEvent.id))
            .scalars()
            .first()
        )
        oldest.at = utcnow() - timedelta(days=31)
        db.session.commit()
    assert runner.invoke(args=["files", "gc"]).exit_code == 0
    assert len(log_of(client, token, link["id"])) == 1
