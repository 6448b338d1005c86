"""Pages that stay signed in: the renewal cookie a page sign-in sets, the
renewal of a page whose ?token= has expired, and what must never renew."""

import io
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

import session_tokens
from helpers import (
    HTML,
    PASSWORD,
    SECRET_KEY,
    AuthActions,
    bearer,
    make_app,
)
from models import db, utcnow

COOKIE = "lockbox_renew"
# Long enough ago that the access token (20 minutes) has expired and its
# leeway passed, well within the refresh token's seven days.
AN_HOUR = timedelta(hours=1)


def page_sign_in(client, remember=True, next_page=None, username="alice"):
    """Sign in with the page's form; the 303 answer."""
    form = {"username": username, "password": PASSWORD}
    if remember:
        form["remember"] = "1"
    if next_page is not None:
        form["next"] = next_page
    response = client.post("/login", data=form, headers=HTML)
    assert response.status_code == 303, response.get_data(as_text=True)
    return response


def signed_in_an_hour_ago(client, monkeypatch, **options) -> str:
    """Sign in with the page an hour ago; the page URL it was sent to, whose
    token has expired since."""
    now = utcnow()
    monkeypatch.setattr(session_tokens, "utcnow", lambda: now - AN_HOUR)
    location = page_sign_in(client, **options).headers["Location"]
    monkeypatch.setattr(session_tokens, "utcnow", lambda: now)
    return location


def token_of(url: str) -> str:
    """The ?token= of a URL."""
    return parse_qs(urlsplit(url).query)["token"][0]


def claims(token: str) -> dict:
    """A token's claims, its signature checked and its expiry not."""
    return jwt.decode(
        token, SECRET_KEY, algorithms=["HS256"], options={"verify_exp": False}
    )


def renewal_cookie(response) -> str:
    """The Set-Cookie line of the renewal cookie in an answer."""
    lines = [
        line
        for line in response.headers.getlist("Set-Cookie")
        if line.startswith(COOKIE + "=")
    ]
    assert len(lines) == 1, response.headers.getlist("Set-Cookie")
    return lines[0]


def cookie_value(client) -> str | None:
    """The renewal cookie the client keeps, if any."""
    cookie = client.get_cookie(COOKIE, path="/renew")
    return None if cookie is None else cookie.value


def visit(client, url: str, **headers):
    """A page navigation, redirects followed; the last answer."""
    return client.get(url, headers={**HTML, **headers}, follow_redirects=True)


@pytest.fixture
def alice(auth):
    auth.create_user()


def test_signing_in_with_the_page_sets_a_renewal_cookie(client, alice):
    response = page_sign_in(client, remember=True)
    line = renewal_cookie(response)
    assert "HttpOnly" in line and "SameSite=Lax" in line and "Path=/renew" in line
    assert "Max-Age=604800" in line  # REFRESH_TTL_SECONDS
    # The cookie is a refresh token of the very sign-in the page's token is of.
    access, refresh = token_of(response.headers["Location"]), cookie_value(client)
    assert claims(refresh)["typ"] == "refresh" and claims(refresh)["keep"] is True
    assert claims(refresh)["fam"] == claims(access)["fam"]


def test_without_keep_me_signed_in_the_cookie_ends_with_the_browser(client, alice):
    line = renewal_cookie(page_sign_in(client, remember=False))
    assert "Max-Age" not in line and "Expires" not in line
    assert "keep" not in claims(cookie_value(client))


def test_api_sign_ins_set_no_cookie(client, alice):
    form = client.post("/login", json={"username": "alice", "password": PASSWORD})
    basic = AuthActions(client.application, client).login()
    for response in (form, basic):
        assert response.status_code == 200
        assert response.headers.getlist("Set-Cookie") == []


@pytest.mark.parametrize("remember", [True, False], ids=["kept", "browser-session"])
def test_an_expired_page_renews_without_the_sign_in_page(
    client, alice, monkeypatch, remember
):
    page = signed_in_an_hour_ago(client, monkeypatch, remember=remember)
    old_cookie = cookie_value(client)
    response = visit(client, page)
    assert response.status_code == 200
    assert response.request.path == "/"
    assert [r.request.path for r in response.history] == ["/", "/renew"]
    fresh = response.request.args["token"]
    assert fresh != token_of(page)
    assert client.get("/files", headers=bearer(fresh)).status_code == 200
    # The cookie was rotated, and keeps its kind: it slides when kept.
    renewed = response.history[-1]
    line = renewal_cookie(renewed)
    assert ("Max-Age=604800" in line) is remember
    assert cookie_value(client) != old_cookie


def test_a_page_without_a_token_renews_too_and_keeps_its_query(client, alice):
    page_sign_in(client)
    response = visit(client, "/?q=report&sort=name")
    assert response.status_code == 200
    assert response.request.path == "/"
    assert response.request.args["q"] == "report"
    assert response.request.args["sort"] == "name"
    assert "token" in response.request.args


def test_a_stolen_expired_url_alone_does_not_renew(app, client, alice, monkeypatch):
    page = signed_in_an_hour_ago(client, monkeypatch)
    thief = app.test_client()
    response = visit(thief, page)
    assert response.request.path == "/login"
    assert "Your session expired — sign in again" in response.get_data(as_text=True)
    # The owner's own browser still renews.
    assert visit(client, page).request.path == "/"


def test_the_cookie_of_another_account_does_not_renew_its_page(
    app, client, auth, alice, monkeypatch
):
    auth.create_user("bob")
    bobs_page = signed_in_an_hour_ago(app.test_client(), monkeypatch, username="bob")
    page_sign_in(client)  # this browser holds alice's cookie
    alices_cookie = cookie_value(client)
    response = visit(client, bobs_page)
    assert response.request.path == "/login"
    assert cookie_value(client) == alices_cookie  # not used, not ended


def test_only_page_navigations_renew(client, alice, monkeypatch):
    page = signed_in_an_hour_ago(client, monkeypatch)
    # An API call gets its 401, whatever cookie the client holds.
    api = client.get(page)
    assert api.status_code == 401
    assert api.get_json() == {"message": "Token expired"}
    # A script's fetch that asks for HTML is not a navigation either.
    fetched = client.get(page, headers={**HTML, "Sec-Fetch-Mode": "cors"})
    assert fetched.status_code == 303
    assert urlsplit(fetched.headers["Location"]).path == "/login"


def test_an_expired_form_does_nothing_and_its_page_says_submit_again(
    client, alice, monkeypatch
):
    page = signed_in_an_hour_ago(client, monkeypatch)
    expired = token_of(page)
    tokens_page = visit(client, f"/tokens?token={expired}")
    assert tokens_page.request.path == "/tokens"
    # The page's form carries where it came from.
    assert "back=/tokens" in tokens_page.get_data(as_text=True)
    posted = client.post(
        f"/tokens?token={expired}&back=/tokens",
        data={"name": "ci", "scopes": "files:read"},
        headers=HTML,
    )
    assert posted.status_code == 303
    assert posted.headers["Location"] == "/tokens"
    response = visit(client, posted.headers["Location"])
    assert response.request.path == "/tokens"
    text = response.get_data(as_text=True)
    assert "nothing was done. Please submit again." in text
    listed = client.get("/tokens", headers=bearer(response.request.args["token"]))
    assert listed.get_json()["items"] == []


def test_an_expired_upload_form_stores_nothing(client, alice, monkeypatch):
    page = signed_in_an_hour_ago(client, monkeypatch)
    posted = client.post(
        f"/upload?token={token_of(page)}",
        data={"inputFile": (io.BytesIO(b"hello"), "hello.txt")},
        headers=HTML,
    )
    assert posted.status_code == 303 and posted.headers["Location"] == "/"
    response = visit(client, "/")
    fresh = response.request.args["token"]
    assert client.get("/files", headers=bearer(fresh)).get_json()["items"] == []


@pytest.mark.parametrize(
    "next_page, lands_on",
    [
        ("/tokens", "/tokens"),
        ("/files?page=2&token=stolen", "/files?page=2"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_next_stays_on_this_site_and_carries_no_token(
    client, alice, next_page, lands_on
):
    response = page_sign_in(client, next_page=next_page)
    location = urlsplit(response.headers["Location"])
    assert location.path == urlsplit(lands_on).path and not location.netloc
    query = parse_qs(location.query)
    assert len(query.pop("token")) == 1
    assert query == parse_qs(urlsplit(lands_on).query)


def test_after_signing_in_the_person_lands_where_they_were_going(client, alice):
    response = visit(client, "/tokens")
    assert response.request.path == "/login"
    assert 'name="next" value="/tokens"' in response.get_data(as_text=True)
    landed = page_sign_in(client, next_page="/tokens")
    assert urlsplit(landed.headers["Location"]).path == "/tokens"


def test_tabs_renewing_together_get_one_successor(client, app, alice, monkeypatch):
    signed_in_an_hour_ago(client, monkeypatch)
    cookie = cookie_value(client)
    other_tab = app.test_client()
    other_tab.set_cookie(COOKIE, cookie, path="/renew")
    first = client.get("/renew?next=/", headers=HTML)
    second = other_tab.get("/renew?next=/", headers=HTML)
    for answer in (first, second):
        assert answer.status_code == 303
        assert urlsplit(answer.headers["Location"]).path == "/"
    one, two = cookie_value(client), cookie_value(other_tab)
    assert claims(one)["jti"] == claims(two)["jti"]
    # Neither looked like a stolen copy: both tabs' tokens work, and renewing
    # goes on.
    for answer in (first, second):
        token = token_of(answer.headers["Location"])
        assert client.get("/files", headers=bearer(token)).status_code == 200
    assert urlsplit(client.get("/renew", headers=HTML).headers["Location"]).path == "/"


def test_a_used_cookie_presented_after_the_grace_window_ends_the_sign_in(
    client, app, alice, monkeypatch
):
    signed_in_an_hour_ago(client, monkeypatch)
    copy = cookie_value(client)
    renewed = client.get("/renew", headers=HTML)
    fresh = token_of(renewed.headers["Location"])
    later = utcnow() + timedelta(minutes=5)
    monkeypatch.setattr(session_tokens, "utcnow", lambda: later)
    thief = app.test_client()
    thief.set_cookie(COOKIE, copy, path="/renew")
    stolen = thief.get("/renew", headers=HTML)
    assert urlsplit(stolen.headers["Location"]).path == "/login"
    # The whole sign-in is over: the owner's renewed page and cookie too.
    assert client.get("/files", headers=bearer(fresh)).status_code == 401
    assert urlsplit(client.get("/renew", headers=HTML).headers["Location"]).path == (
        "/login"
    )


@pytest.mark.parametrize("everywhere", [False, True], ids=["this", "everywhere"])
def test_signing_out_ends_renewal_on_every_instance(
    client, database_url, alice, everywhere
):
    page = page_sign_in(client).headers["Location"]
    cookie = cookie_value(client)
    query = "&everywhere=1" if everywhere else ""
    out = client.post(f"/logout?token={token_of(page)}{query}", headers=HTML)
    assert out.status_code == 303
    assert urlsplit(out.headers["Location"]).path == "/login"
    ended = renewal_cookie(out)
    assert "Max-Age=0" in ended or "Expires=Thu, 01 Jan 1970" in ended
    assert cookie_value(client) is None
    # Another instance of the app, on the same database, with the cookie.
    other = make_app(database_url)
    try:
        browser = other.test_client()
        browser.set_cookie(COOKIE, cookie, path="/renew")
        renewal = browser.get("/renew?next=/", headers=HTML)
        assert urlsplit(renewal.headers["Location"]).path == "/login"
    finally:
        with other.app_context():
            db.engine.dispose()


def test_signing_out_from_an_expired_page_still_signs_out(client, alice, monkeypatch):
    page = signed_in_an_hour_ago(client, monkeypatch)
    cookie = cookie_value(client)
    out = client.post(f"/logout?token={token_of(page)}", headers=HTML)
    assert out.status_code == 303
    assert urlsplit(out.headers["Location"]).path == "/login"
    assert cookie_value(client) is None
    client.set_cookie(COOKIE, cookie, path="/renew")
    assert urlsplit(client.get("/renew", headers=HTML).headers["Location"]).path == (
        "/login"
    )


def test_the_tutorials_token_url_works_as_before(client, auth, alice):
    token = auth.token()
    page = client.get(f"/?token={token}")
    assert page.status_code == 200
    assert page.headers.getlist("Set-Cookie") == []


def test_renewal_is_described_and_refuses_nothing_badly(client, alice):
    # No cookie, odd arguments: always a way on, never an error.
    odd = ["/renew?next=", "/renew?token=garbage&next=%00", "/renew?next=/%0d%0aX:1"]
    for url in ["/renew", *odd]:
        response = client.get(url, headers=HTML)
        assert response.status_code == 303, url
        assert urlsplit(response.headers["Location"]).path == "/login"
