"""Brute-force limits on signing in (Flask-Limiter)."""

import uuid

import pytest
import redis

from conftest import PASSWORD, basic_auth, empty_tables, make_app


def fail(client, username="alice", password="wrong password"):
    """One failed sign-in with Basic auth; the response."""
    return client.get("/login", headers=basic_auth(username, password))


def test_failed_logins_for_one_username_are_limited(auth, client):
    auth.create_user()
    for _ in range(10):
        assert fail(client).status_code == 401
    response = fail(client)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.get_json()["message"]
    assert int(response.headers["Retry-After"]) > 0
    # Locked even with the right password, until the minute is over.
    assert auth.login().status_code == 429


def test_successful_logins_do_not_count(auth):
    auth.create_user()
    for _ in range(15):
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
