"""Brute-force limits on signing in (Flask-Limiter)."""

import uuid

import pytest
import redis

from helpers import PASSWORD, basic_auth, empty_tables, make_app


def fail(client, username="alice", password="wrong password"):
    """One failed sign-in with Basic auth; the response."""
    return client.get("/login", headers=basic_auth(username, password))


def test_failed_logins_for_one_username_are_limited(auth, client):
    auth.create_user()
    for _ in range(10):
        assert fail(client).status_code == 401
    response = fail(client)
    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.get_json()["message"]
    assert int(response.headers["Retry-After"]) > 0
    # Locked even with the right password, until the minute is over.
    assert auth.login().status_code == 429


def test_every_sign_in_attempt_counts_successful_ones_too(auth):
    """Counted when it starts, a sign-in cannot slip past the limit while
    another is still being checked; 10 a minute is plenty for a person."""
    auth.create_user()
    for _ in range(10):
        assert auth.login().status_code == 200
    assert auth.login().status_code == 429


def test_impossible_names_never_lock_out_real_users(auth, client):
    """Names no account can have and requests without a name share no
    bucket with real names: none of them can lock anybody out."""
    auth.create_user()
    for name in ["!x", "", " ", "a b", "x" * 81] * 3:
        assert fail(client, name).status_code == 401
    for body in [{}, {"username": "!x", "password": "x"}, {"username": 5}] * 4:
        assert client.post("/login", json=body).status_code in (400, 401)
    assert client.get("/login").status_code == 401  # no credentials at all
    assert auth.login().status_code == 200


@pytest.mark.parametrize(
    "app_settings",
    [{"LOGIN_LIMIT_PER_ADDRESS": "5 per minute"}],
)
def test_impossible_names_still_count_against_their_address(auth, client):
    auth.create_user()
    for name in ["!a", "!b", "!c", "!d", "!e"]:
        assert fail(client, name).status_code == 401
    assert fail(client, "!f").status_code == 429


@pytest.mark.parametrize("app_settings", [{"LOGIN_LIMIT_PER_ADDRESS": "3 per minute"}])
def test_the_sign_in_page_itself_counts_against_no_limit(auth, client):
    auth.create_user()
    for _ in range(10):
        page = client.get("/login", headers={"Accept": "text/html"})
        assert page.status_code == 200
    assert auth.login().status_code == 200


def test_a_locked_username_does_not_block_others_from_the_same_address(auth, client):
    auth.create_user("alice")
    auth.create_user("bob")
    for _ in range(11):
        fail(client, "alice")
    assert fail(client, "alice").status_code == 429
    assert auth.login("bob").status_code == 200


@pytest.mark.parametrize(
    "app_settings",
    [
        {
            "LOGIN_LIMIT_PER_ADDRESS": "5 per minute",
            "LOGIN_LIMIT_PER_USERNAME": "50/minute",
        }
    ],
)
def test_failed_logins_from_one_address_are_limited(auth, client):
    auth.create_user()
    for number in range(5):
        assert fail(client, f"user{number}").status_code == 401
    assert fail(client, "someone-else").status_code == 429


@pytest.mark.parametrize("app_settings", [{"LOGIN_LIMIT_PER_USERNAME": "3 per minute"}])
def test_the_username_limit_is_configurable(auth, client):
    auth.create_user()
    for _ in range(3):
        assert fail(client).status_code == 401
    assert fail(client).status_code == 429


@pytest.mark.parametrize("app_settings", [{"LOGIN_LIMIT_PER_USERNAME": "3 per minute"}])
def test_form_and_basic_failures_count_together(auth, client):
    auth.create_user()
    client.post("/login", data={"username": "alice", "password": "x"})
    client.post("/login", json={"username": "alice", "password": "x"})
    fail(client)
    response = client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 429


def test_rate_limits_are_shared_through_redis(database_url):
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is not reachable on 127.0.0.1:6379: {error}")
    settings = {
        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379",
        "LOGIN_LIMIT_PER_USERNAME": "4 per minute",
    }
    # A name of its own, so that no other run's counts in Redis can interfere.
    username = f"redis-{uuid.uuid4().hex[:12]}"
    first = make_app(database_url, **settings)
    try:
        for _ in range(4):
            assert fail(first.test_client(), username).status_code == 401
        # A second instance of the app sees the same counts.
        second = make_app(database_url, **settings)
        assert fail(second.test_client(), username).status_code == 429
    finally:
        empty_tables(first)


@pytest.mark.parametrize(
    "app_settings",
    [
        {
            "LOGIN_LIMIT_PER_ADDRESS": "2 per minute",
            "LOGIN_LIMIT_PER_USERNAME": "50 per minute",
            "TRUSTED_PROXIES": 1,
        }
    ],
)
def test_behind_a_proxy_each_client_address_has_its_own_limit(auth, client):
    def fail_from(address, username):
        headers = {**basic_auth(username, "wrong"), "X-Forwarded-For": address}
        return client.get("/login", headers=headers)

    assert fail_from("198.51.100.7", "a").status_code == 401
    assert fail_from("198.51.100.7", "b").status_code == 401
    assert fail_from("198.51.100.7", "c").status_code == 429
    assert fail_from("198.51.100.8", "d").status_code == 401


@pytest.mark.parametrize("how", ["data", "json"])
def test_a_decoy_basic_header_does_not_dodge_the_username_limit(auth, client, how):
    # The body's username is the one checked, so it is the one counted, however
    # many other names an Authorization header carries alongside.
    auth.create_user()
    wrong = {"username": "alice", "password": "wrong password"}
    for number in range(10):
        decoy = basic_auth(f"decoy{number}", "x")
        assert client.post("/login", headers=decoy, **{how: wrong}).status_code == 401
    right = {"username": "alice", "password": PASSWORD}
    response = client.post("/login", headers=basic_auth("decoy", "x"), **{how: right})
    assert response.status_code == 429


def test_trailing_spaces_do_not_dodge_the_username_limit(auth, client):
    # MariaDB's PAD SPACE collation finds "bob" for "bob ": a name outside the
    # username rules must never reach the database.
    auth.create_user("bob")
    for _ in range(10):
        assert fail(client, "bob").status_code == 401
    assert fail(client, "bob", PASSWORD).status_code == 429
    for spaces in range(1, 4):
        response = fail(client, "bob" + " " * spaces, PASSWORD)
        assert response.status_code == 401, spaces


@pytest.mark.parametrize("name", ["bob ", " bob", "bob\t", "bob\x00", "b" * 81, ""])
def test_a_name_outside_the_username_rules_never_signs_in(auth, client, name):
    auth.create_user("bob")
    assert fail(client, name, PASSWORD).status_code == 401
    response = client.post("/login", json={"username": name, "password": PASSWORD})
    assert response.status_code == 401


@pytest.mark.parametrize("app_settings", [{"LOGIN_LIMIT_PER_ADDRESS": "3 per minute"}])
def test_limits_act_on_the_routes_that_carry_them_and_nowhere_else(auth, client):
    # A limited route counts and says so in its headers...
    response = fail(client)
    assert response.status_code == 401
    limit = int(response.headers["X-RateLimit-Limit"])
    assert int(response.headers["X-RateLimit-Remaining"]) < limit
    # ...while any other route, however often asked, is neither counted nor
    # limited.
    for _ in range(20):
        answer = client.get("/livez")
        assert answer.status_code == 200
        assert "X-RateLimit-Limit" not in answer.headers
    assert "X-RateLimit-Limit" not in client.get("/healthz").headers
