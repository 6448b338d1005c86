"""The server side of the pages: sign-in, redirects, delete form, headers."""

import io

import pytest

from formats import human_size
from helpers import PASSWORD, basic_auth, expired_token
from models import StoredFile, db

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def upload(client, token, name="a.txt", content=b"abc", description=""):
    """Upload a file through the API; its id."""
    response = client.post(
        f"/upload?token={token}",
        data={"inputFile": (io.BytesIO(content), name), "description": description},
    )
    assert response.status_code == 201
    return response.get_json()["id"]


@pytest.mark.one_database
def test_browser_gets_the_sign_in_page(client):
    response = client.get("/login", headers=HTML)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<form class="stack" method="post" action="/login">' in page
    assert 'name="username"' in page and 'name="password"' in page


@pytest.mark.one_database
def test_api_client_still_gets_the_basic_challenge(client):
    response = client.get("/login")
    assert response.status_code == 401
    assert response.get_json() == {"message": "Unable to verify"}
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Login required"'


def test_browser_with_basic_credentials_gets_the_token(auth, client):
    auth.create_user()
    response = client.get("/login", headers={**HTML, **basic_auth("alice", PASSWORD)})
    assert response.status_code == 200
    assert response.get_json()["token_type"] == "Bearer"


def test_sign_in_form_redirects_to_the_files_with_a_token(auth, client):
    auth.create_user()
    response = client.post(
        "/login", data={"username": "alice", "password": PASSWORD}, headers=HTML
    )
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/?token=")
    assert client.get(location, headers=HTML).status_code == 200


@pytest.mark.parametrize(
    "form",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "alice"},
        {},
    ],
    ids=["wrong-password", "unknown-user", "no-password", "empty"],
)
def test_failed_sign_in_form_shows_one_generic_error(auth, client, form):
    auth.create_user()
    response = client.post("/login", data=form, headers=HTML)
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert "Wrong username or password" in page
    assert 'type="password"' in page


def test_post_login_with_json_returns_the_token(auth, client):
    auth.create_user()
    response = client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    assert set(response.get_json()) == {
        "token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
    }


@pytest.mark.parametrize(
    "body",
    [{"username": "alice", "password": "nope"}, {"username": 1, "password": []}],
    ids=["wrong", "wrong-types"],
)
def test_post_login_with_bad_json_is_401(auth, client, body):
    auth.create_user()
    response = client.post("/login", json=body)
    assert response.status_code == 401
    assert response.get_json() == {"message": "Unable to verify"}


def test_post_login_with_json_that_is_not_an_object_is_400(auth, client):
    auth.create_user()
    response = client.post("/login", json=[1])
    assert response.status_code == 400
    assert response.get_json() == {"message": "The body must be a JSON object"}


@pytest.mark.one_database
def test_browser_without_token_is_sent_to_sign_in(client):
    # It tries to renew first; without the renewal cookie, it signs in, and
    # will then come back here.
    response = client.get("/files?page=2", headers=HTML)
    assert response.status_code == 303
    assert response.headers["Location"] == "/renew?next=/files?page%3D2"
    response = client.get(response.headers["Location"], headers=HTML)
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?next=/files?page%3D2"


def test_browser_with_expired_token_is_told_to_sign_in_again(auth, client):
    user_id = auth.create_user()
    response = client.get(
        f"/?token={expired_token(str(user_id))}", headers=HTML, follow_redirects=True
    )
    assert response.request.path == "/login"
    assert "Your session expired — sign in again" in response.get_data(as_text=True)


@pytest.mark.one_database
def test_sign_in_page_for_an_expired_upload_says_so(client):
    page = client.get("/login?expired=1", headers=HTML).get_data(as_text=True)
    assert "Your session expired — sign in again" in page


def test_api_client_with_expired_token_still_gets_json(auth, client):
    user_id = auth.create_user()
    response = client.get(f"/?token={expired_token(str(user_id))}")
    assert response.status_code == 401
    assert response.get_json() == {"message": "Token expired"}


def test_home_lists_files_with_links_that_keep_the_token(client, token):
    file_id = upload(client, token, "report.pdf", b"x" * 2048, "quarterly")
    page = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert "report.pdf" in page and "quarterly" in page and "2.0 KiB" in page
    assert f'href="/files/{file_id}/download?token={token}"' in page
    assert f'action="/files/{file_id}/delete?token={token}"' in page


def test_home_escapes_filenames_and_descriptions(client, token):
    upload(client, token, "<img src=x onerror=alert(1)>.txt", b"x", "<b>bold</b>")
    page = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page


def test_home_pages_through_many_files(client, token):
    for number in range(3):
        upload(client, token, f"file{number}.txt")
    page = client.get(f"/?token={token}&per_page=2", headers=HTML).get_data(
        as_text=True
    )
    assert "Page 1 of 2" in page
    assert "file2.txt" in page and "file0.txt" not in page
    assert f'href="/?token={token}&amp;page=2"' in page
    assert 'rel="prev"' not in page
    last = client.get(f"/?token={token}&per_page=2&page=2", headers=HTML)
    last = last.get_data(as_text=True)
    assert "Page 2 of 2" in last and "file0.txt" in last
    assert f'href="/?token={token}&amp;page=1"' in last and 'rel="next"' not in last


def test_delete_form_without_confirmation_asks_on_a_page(app, client, token):
    file_id = upload(client, token, "keep.txt")
    response = client.post(f"/files/{file_id}/delete?token={token}", headers=HTML)
    assert response.status_code == 200
    assert "Delete this file?" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(StoredFile, file_id) is not None


def test_confirmed_delete_form_deletes_and_says_so(app, client, token):
    file_id = upload(client, token, "gone.txt")
    response = client.post(
        f"/files/{file_id}/delete?token={token}", data={"confirm": "yes"}, headers=HTML
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"/?token={token}"
    page = client.get(response.headers["Location"], headers=HTML).get_data(as_text=True)
    assert "file gone.txt deleted" in page
    with app.app_context():
        assert db.session.get(StoredFile, file_id) is None


def test_delete_form_for_someone_elses_file_is_404(auth, client):
    auth.create_user("alice")
    auth.create_user("bob")
    file_id = upload(client, auth.token("bob"))
    response = client.post(
        f"/files/{file_id}/delete?token={auth.token('alice')}", data={"confirm": "yes"}
    )
    assert response.status_code == 404


def test_pages_forbid_inline_scripts_and_framing(client, token):
    response = client.get(f"/?token={token}", headers=HTML)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "object-src 'none'" in policy
    assert "base-uri 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in response.get_data(as_text=True)


def test_pages_with_a_token_are_not_stored_or_referred(client, token):
    response = client.get(f"/?token={token}", headers=HTML)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.one_database
def test_every_response_says_nosniff(client):
    assert client.get("/nowhere").headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/login").headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.one_database
def test_stylesheet_and_script_are_served_locally(client):
    with client.get("/static/style.css") as stylesheet:
        assert stylesheet.status_code == 200
    with client.get("/static/app.js") as script:
        assert script.status_code == 200
        assert b"new window.tus.Upload(" in script.get_data()
    # The resumable-upload client ships with the app: make run needs no npm.
    with client.get("/static/vendor/tus.min.js") as vendored:
        assert vendored.status_code == 200
        assert b"tus" in vendored.get_data()[:400]
    with client.get("/static/vendor/tus-js-client.LICENSE") as licence:
        assert licence.status_code == 200
        assert licence.get_data().startswith(b"The MIT License")


def test_the_upload_page_loads_the_vendored_tus_client_before_its_script(client, token):
    page = client.get(f"/?token={token}").get_data(as_text=True)
    assert page.index("/static/vendor/tus.min.js") < page.index("/static/app.js")


@pytest.mark.parametrize(
    "size, shown",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * 1024**2, "5.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (2 * 1024**4, "2.0 TiB"),
    ],
)
def test_sizes_read_as_people_read_them(size, shown):
    assert human_size(size) == shown


@pytest.mark.one_database
def test_every_page_names_the_favicon_and_it_is_served(client):
    page = client.get("/login", headers=HTML).get_data(as_text=True)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    with client.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
        assert b"<svg" in icon.data and b"<script" not in icon.data
