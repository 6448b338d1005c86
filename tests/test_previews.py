"""Previews: what a page may show of a file, the inline downloads it shows
them from, and share links' previews counted like their downloads."""

import pytest

from helpers import HTML, bearer, uploaded

SAMPLES = {
    # name: (stored content type, how the page shows it, the inline type)
    "photo.png": ("image/png", "img", "image/png"),
    "clip.webm": ("video/webm", "video", "video/webm"),
    "song.mp3": ("audio/mpeg", "audio", "audio/mpeg"),
    "report.pdf": ("application/pdf", "preview-pdf", "application/pdf"),
    "notes.txt": ("text/plain", "iframe", "text/plain; charset=utf-8"),
    "data.json": ("application/json", "iframe", "text/plain; charset=utf-8"),
}


def upload_as(client, token, name, content_type, content=b"0123456789" * 30) -> int:
    """Upload a file declared as ``content_type``; its id."""
    return uploaded(client, token, content, name, content_type=content_type)["id"]


@pytest.mark.parametrize("name", SAMPLES)
def test_the_files_page_shows_each_kind_from_its_inline_download(client, token, name):
    content_type, element, inline_as = SAMPLES[name]
    file_id = upload_as(client, token, name, content_type)
    page = client.get(f"/files/{file_id}/preview?token={token}", headers=HTML)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert element in text
    assert f"/files/{file_id}/download?token={token}&amp;inline=1" in text
    shown = client.get(f"/files/{file_id}/download?inline=1", headers=bearer(token))
    assert shown.status_code == 200
    assert shown.headers["Content-Type"] == inline_as
    assert shown.headers["Content-Disposition"].startswith("inline; ")
    assert shown.headers["Content-Security-Policy"] == "sandbox"
    assert shown.headers["X-Content-Type-Options"] == "nosniff"


def test_the_list_links_each_name_to_its_page(client, token):
    file_id = upload_as(client, token, "photo.png", "image/png")
    page = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert f'href="/files/{file_id}/preview?token={token}">photo.png</a>' in page


@pytest.mark.parametrize(
    "name, content_type",
    [("page.html", "text/html"), ("logo.svg", "image/svg+xml"), ("x.xml", "text/xml")],
)
def test_what_a_browser_would_run_is_only_ever_text(client, token, name, content_type):
    hostile = b"<script>alert(document.domain)</script>"
    file_id = upload_as(client, token, name, content_type, hostile)
    shown = client.get(f"/files/{file_id}/download?inline=1", headers=bearer(token))
    assert shown.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert shown.data == hostile
    page = client.get(f"/files/{file_id}/preview?token={token}", headers=HTML)
    assert "<iframe" in page.get_data(as_text=True)
    assert "sandbox" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    "name, content_type, size",
    [
        ("blob.bin", "application/octet-stream", 300),
        ("archive.zip", "application/zip", 300),
        ("big.txt", "text/plain", 1024 * 1024 + 1),
    ],
)
def test_files_no_page_shows_download_even_when_asked_inline(
    client, token, name, content_type, size
):
    file_id = upload_as(client, token, name, content_type, b"x" * size)
    answer = client.get(f"/files/{file_id}/download?inline=1", headers=bearer(token))
    assert answer.headers["Content-Type"] == content_type
    assert answer.headers["Content-Disposition"].startswith("attachment; ")
    page = client.get(f"/files/{file_id}/preview?token={token}", headers=HTML)
    assert "No preview for this kind of file" in page.get_data(as_text=True)


def test_an_inline_video_seeks_with_ranges(client, token):
    content = bytes(range(256)) * 40
    file_id = upload_as(client, token, "clip.webm", "video/webm", content)
    part = client.get(
        f"/files/{file_id}/download?inline=1",
        headers=bearer(token, Range="bytes=1000-1099"),
    )
    assert part.status_code == 206
    assert part.data == content[1000:1100]
    assert part.headers["Content-Type"] == "video/webm"


def test_another_accounts_file_has_no_page(client, auth, token):
    file_id = upload_as(client, token, "photo.png", "image/png")
    auth.create_user("bob")
    page = client.get(f"/files/{file_id}/preview?token={auth.token('bob')}")
    assert page.status_code == 404


def make_link(client, token, file_id, **settings) -> str:
    """A share link's path."""
    answer = client.post(
        f"/files/{file_id}/shares", json=settings, headers=bearer(token)
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["url"].removeprefix("http://localhost")


def downloads_of(client, token, file_id) -> int:
    """How many downloads the file's one link has counted."""
    links = client.get(f"/files/{file_id}/shares", headers=bearer(token)).get_json()
    return links["items"][0]["downloads"]


def test_a_link_without_a_limit_shows_its_file_at_once(app, client, token):
    file_id = upload_as(client, token, "photo.png", "image/png")
    link = make_link(client, token, file_id)
    page = app.test_client().get(link, headers=HTML).get_data(as_text=True)
    assert f'<img class="preview-media" src="{link}/download?inline=1"' in page


def test_a_one_time_links_preview_and_download_are_one_download(app, client, token):
    content = b"a picture" * 100
    file_id = upload_as(client, token, "photo.png", "image/png", content)
    link = make_link(client, token, file_id, max_downloads=1)
    visitor = app.test_client()
    # The page asks first: a preview takes the visitor's one download.
    page = visitor.get(link, headers=HTML).get_data(as_text=True)
    assert "preview-media" not in page and 'id="share-preview"' in page
    assert downloads_of(client, token, file_id) == 0
    page = visitor.get(f"{link}?preview=1", headers=HTML).get_data(as_text=True)
    assert "preview-media" in page
    shown = visitor.get(f"{link}/download?inline=1")
    assert shown.status_code == 200 and shown.data == content
    assert shown.headers["Content-Disposition"].startswith("inline; ")
    assert downloads_of(client, token, file_id) == 1
    # The download after it is the same one: the claim the preview took.
    saved = visitor.get(f"{link}/download")
    assert saved.status_code == 200 and saved.data == content
    assert saved.headers["Content-Disposition"].startswith("attachment; ")
    assert downloads_of(client, token, file_id) == 1
    # The page shows the file again without asking; anyone else is too late.
    assert "preview-media" in visitor.get(link, headers=HTML).get_data(as_text=True)
    assert app.test_client().get(f"{link}/download?inline=1").status_code == 410


def test_a_password_link_shows_nothing_before_its_password(app, client, token):
    file_id = upload_as(client, token, "photo.png", "image/png")
    link = make_link(client, token, file_id, password="correct horse")
    visitor = app.test_client()
    page = visitor.get(link, headers=HTML)
    assert page.status_code == 401 and "preview-media" not in page.get_data(True)
    assert visitor.get(f"{link}/download?inline=1").status_code == 401
    unlocked = visitor.post(
        link, data={"password": "correct horse"}, headers=HTML, follow_redirects=True
    )
    assert "preview-media" in unlocked.get_data(as_text=True)
    assert visitor.get(f"{link}/download?inline=1").status_code == 200


@pytest.mark.parametrize("query", ["inline=0", "inline=null", "inline=1&inline=1"])
def test_any_other_inline_is_a_400(client, token, query):
    file_id = upload_as(client, token, "photo.png", "image/png")
    answer = client.get(f"/files/{file_id}/download?{query}", headers=bearer(token))
    assert answer.status_code == 400
    assert answer.get_json() == {"message": "inline must be 1, once"}
