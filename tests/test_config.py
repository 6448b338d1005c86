"""Configuration from the environment, and the app's refusal to start unsafely."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import config
from app import create_app

PROJECT_DIR = Path(__file__).resolve().parent.parent
ENV_SETTINGS = [
    "SECRET_KEY",
    "DATABASE_URL",
    "TOKEN_TTL_SECONDS",
    "MAX_CONTENT_LENGTH",
    "CHUNK_SIZE",
    "JWT_ISSUER",
    "FLASK_DEBUG",
]
INT_SETTINGS = ["TOKEN_TTL_SECONDS", "MAX_CONTENT_LENGTH", "CHUNK_SIZE"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No Lockbox setting leaks in from the shell that runs the tests."""
    for name in ENV_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def refused_start(command, env, timeout) -> subprocess.CompletedProcess:
    """Run ``command`` in the project with ``env``: it must refuse to start,
    saying why without a traceback; what it printed."""
    done = subprocess.run(
        command,
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    return done


def production_app(tmp_path, **settings):
    """create_app as in production (not testing), on a throwaway SQLite file."""
    return create_app(
        {
            "TESTING": False,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'lockbox.db'}",
            **settings,
        }
    )


# --- the signing key ---------------------------------------------------------


def test_missing_secret_key_is_refused(tmp_path):
    with pytest.raises(config.ConfigError, match="SECRET_KEY is not set"):
        production_app(tmp_path)


def test_empty_secret_key_is_refused(tmp_path):
    with pytest.raises(config.ConfigError, match="SECRET_KEY is not set"):
        production_app(tmp_path, SECRET_KEY="")


@pytest.mark.parametrize("key", ["x", "short-but-varied-key", "Ab3$" * 7 + "Ab3"])
def test_short_secret_key_is_refused(tmp_path, key):
    assert len(key.encode()) < config.MIN_SECRET_BYTES
    with pytest.raises(config.ConfigError, match="shorter than 32 bytes"):
        production_app(tmp_path, SECRET_KEY=key)


@pytest.mark.parametrize("key", sorted(config.PLACEHOLDER_SECRETS))
def test_placeholder_secret_key_is_refused(tmp_path, key):
    with pytest.raises(config.ConfigError, match="well-known placeholder"):
        production_app(tmp_path, SECRET_KEY=key)


@pytest.mark.parametrize("key", ["ThisIsSecret", " changeme ", "CHANGEME\n"])
def test_placeholder_secret_key_in_other_case_or_padding_is_refused(tmp_path, key):
    with pytest.raises(config.ConfigError, match="well-known placeholder"):
        production_app(tmp_path, SECRET_KEY=key)


@pytest.mark.parametrize("key", ["a" * 64, "ab" * 40, "0123456" * 10])
def test_long_secret_key_with_few_distinct_characters_is_refused(tmp_path, key):
    with pytest.raises(config.ConfigError, match="too few distinct characters"):
        production_app(tmp_path, SECRET_KEY=key)


def test_refusal_says_how_to_make_a_good_key(tmp_path):
    with pytest.raises(config.ConfigError, match="secrets.token_urlsafe"):
        production_app(tmp_path, SECRET_KEY="changeme")


def test_random_secret_key_is_accepted(tmp_path):
    key = secrets.token_urlsafe(48)
    app = production_app(tmp_path, SECRET_KEY=key)
    assert app.config["SECRET_KEY"] == key
    assert not app.testing


def test_random_bytes_secret_key_is_accepted(tmp_path):
    key = secrets.token_bytes(32)
    app = production_app(tmp_path, SECRET_KEY=key)
    assert app.config["SECRET_KEY"] == key


def test_secret_key_is_read_from_the_environment(tmp_path, monkeypatch):
    key = secrets.token_urlsafe(48)
    monkeypatch.setenv("SECRET_KEY", key)
    app = production_app(tmp_path)
    assert app.config["SECRET_KEY"] == key


def test_testing_app_without_a_key_gets_a_random_one(tmp_path):
    app = production_app(tmp_path, TESTING=True)
    key = app.config["SECRET_KEY"]
    assert isinstance(key, str)
    assert config.secret_key_problem(key) is None
    assert len(key.encode()) >= config.MIN_SECRET_BYTES


def test_each_testing_app_gets_its_own_random_key(tmp_path):
    first = production_app(tmp_path, TESTING=True).config["SECRET_KEY"]
    second = production_app(tmp_path, TESTING=True).config["SECRET_KEY"]
    assert first != second


def test_debug_app_without_a_key_starts_too(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = production_app(tmp_path)
    assert app.debug
    assert len(app.config["SECRET_KEY"]) >= config.MIN_SECRET_BYTES


def test_testing_app_keeps_a_weak_key_it_is_given(tmp_path):
    app = production_app(tmp_path, TESTING=True, SECRET_KEY="dev")
    assert app.config["SECRET_KEY"] == "dev"


# --- settings from the environment -------------------------------------------


def test_defaults_without_environment(tmp_path):
    settings = config.from_environment(str(tmp_path))
    assert settings["SECRET_KEY"] is None
    assert settings["TOKEN_TTL_SECONDS"] == 1200
    assert settings["MAX_CONTENT_LENGTH"] == 1024 * config.MIB
    assert settings["CHUNK_SIZE"] == config.MIB
    assert settings["JWT_ISSUER"] == "lockbox"


def test_default_database_is_a_sqlite_file_in_the_instance_path(tmp_path):
    settings = config.from_environment(str(tmp_path))
    expected = "sqlite:///" + os.path.join(str(tmp_path), "lockbox.db")
    assert settings["SQLALCHEMY_DATABASE_URI"] == expected


def test_empty_database_url_means_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "")
    settings = config.from_environment(str(tmp_path))
    assert settings["SQLALCHEMY_DATABASE_URI"].endswith("lockbox.db")


def test_database_url_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://lockbox@db.example/lockbox")
    settings = config.from_environment(str(tmp_path))
    assert settings["SQLALCHEMY_DATABASE_URI"] == "mysql://lockbox@db.example/lockbox"


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("TOKEN_TTL_SECONDS", "60", 60),
        ("TOKEN_TTL_SECONDS", " 3600 ", 3600),
        ("MAX_CONTENT_LENGTH", "1048576", 1048576),
        ("MAX_CONTENT_LENGTH", "10_485_760", 10485760),
        ("CHUNK_SIZE", "65536", 65536),
    ],
)
def test_integer_settings_are_read(tmp_path, monkeypatch, name, raw, expected):
    monkeypatch.setenv(name, raw)
    assert config.from_environment(str(tmp_path))[name] == expected


@pytest.mark.parametrize("name", INT_SETTINGS)
def test_blank_integer_setting_means_the_default(tmp_path, monkeypatch, name):
    default = config.from_environment(str(tmp_path))[name]
    monkeypatch.setenv(name, "  ")
    assert config.from_environment(str(tmp_path))[name] == default


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "1.5", "12abc"])
@pytest.mark.parametrize("name", INT_SETTINGS)
def test_bad_integer_setting_is_refused_by_name(tmp_path, monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(config.ConfigError, match=name):
        config.from_environment(str(tmp_path))


def test_chunk_size_below_one_kib_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CHUNK_SIZE", "1023")
    with pytest.raises(config.ConfigError, match="CHUNK_SIZE must be at least 1024"):
        config.from_environment(str(tmp_path))


def test_chunk_size_above_the_maximum_stops_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("CHUNK_SIZE", str(config.MAX_CHUNK_SIZE + 1))
    with pytest.raises(config.ConfigError, match="CHUNK_SIZE"):
        production_app(tmp_path, SECRET_KEY=secrets.token_urlsafe(48))


def test_environment_settings_reach_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKEN_TTL_SECONDS", "90")
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "2048")
    app = production_app(tmp_path, SECRET_KEY=secrets.token_urlsafe(48))
    assert app.config["TOKEN_TTL_SECONDS"] == 90
    assert app.config["MAX_CONTENT_LENGTH"] == 2048


# --- engine options ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@127.0.0.1:3306/lockbox",
        "mysql+mysqldb://root@127.0.0.1/lockbox",
        "mariadb://root@127.0.0.1/lockbox",
        "mariadb+mysqldb://root@127.0.0.1/lockbox",
        "MYSQL://root@127.0.0.1/lockbox",
    ],
)
def test_mysqlclient_urls_send_binary_literals_and_recycle(url):
    options = config.engine_options(url)
    assert options["connect_args"]["binary_prefix"] is True
    assert options["pool_recycle"] == 3600
    assert options["pool_pre_ping"] is True


def test_other_mysql_drivers_recycle_without_mysqlclient_arguments():
    options = config.engine_options("mariadb+mariadbconnector://root@127.0.0.1/x")
    assert "binary_prefix" not in options["connect_args"]
    assert options["pool_recycle"] == 3600
    assert options["pool_pre_ping"] is True


@pytest.mark.parametrize(
    "url",
    ["mysql://root@127.0.0.1/lockbox", "mariadb+mariadbconnector://root@127.0.0.1/x"],
)
def test_mysql_connections_give_up_connecting_within_seconds(url):
    options = config.engine_options(url)
    assert options["connect_args"]["connect_timeout"] == config.CONNECT_TIMEOUT_SECONDS
    assert 1 <= config.CONNECT_TIMEOUT_SECONDS <= 10
    # No read timeout: it would cut long statements that are legitimately slow.
    assert "read_timeout" not in options["connect_args"]


def test_a_connect_timeout_in_the_url_wins():
    options = config.engine_options("mysql://root@127.0.0.1/lockbox?connect_timeout=30")
    assert "connect_timeout" not in options["connect_args"]


def test_mysql_connections_wait_an_hour_for_a_stalled_download(app):
    from models import db

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            pytest.skip("a MySQL/MariaDB server setting")
        timeout = db.session.execute(db.text("SELECT @@session.net_write_timeout"))
        assert timeout.scalar() == 3600


@pytest.mark.parametrize("url", ["sqlite:///lockbox.db", "sqlite://"])
def test_sqlite_urls_get_only_pre_ping(url):
    assert config.engine_options(url) == {"pool_pre_ping": True}


def test_app_uses_the_engine_options_for_its_database(tmp_path):
    app = production_app(
        tmp_path,
        SECRET_KEY=secrets.token_urlsafe(48),
        SQLALCHEMY_DATABASE_URI="mysql://root@127.0.0.1:1/nothing",
    )
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["connect_args"]["binary_prefix"] is True
    assert options["pool_recycle"] == 3600


def test_explicit_engine_options_win_over_the_defaults(tmp_path):
    app = production_app(
        tmp_path,
        SECRET_KEY=secrets.token_urlsafe(48),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": False},
    )
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {"pool_pre_ping": False}


# --- python app.py -----------------------------------------------------------


def test_python_app_py_without_a_key_exits_with_a_clear_message():
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ENV_SETTINGS and not name.startswith("FLASK_")
    }
    # Empty values: load_dotenv leaves set variables alone, so a developer's .env
    # cannot supply a key (or turn the debugger on) behind the test's back.
    env["SECRET_KEY"] = ""
    env["FLASK_DEBUG"] = ""
    completed = refused_start([sys.executable, "app.py"], env, timeout=30)
    assert "SECRET_KEY" in completed.stderr
    assert "Lockbox cannot start" in completed.stderr


def test_unsafe_fallback_key_is_refused(tmp_path):
    with pytest.raises(config.ConfigError, match="SECRET_KEY_FALLBACKS"):
        production_app(
            tmp_path,
            SECRET_KEY=secrets.token_urlsafe(48),
            SECRET_KEY_FALLBACKS=["thisissecret"],
        )


def test_fallback_keys_are_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY_FALLBACKS", " old-key-one , old-key-two ,")
    settings = config.from_environment(str(tmp_path))
    assert settings["SECRET_KEY_FALLBACKS"] == ["old-key-one", "old-key-two"]


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("on", True), ("0", False), ("", False)]
)
def test_session_cookie_secure_is_an_on_off_setting(monkeypatch, raw, expected):
    monkeypatch.setenv("SESSION_COOKIE_SECURE", raw)
    assert config.from_environment("/tmp")["SESSION_COOKIE_SECURE"] is expected


def test_a_malformed_on_off_setting_is_refused(monkeypatch):
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "maybe")
    with pytest.raises(config.ConfigError, match="SESSION_COOKIE_SECURE must be 1"):
        config.from_environment("/tmp")


# --- settings read from files (container secrets) -----------------------------


@pytest.mark.parametrize("name", config.SECRET_SETTINGS)
def test_each_secret_setting_may_come_from_a_file(monkeypatch, tmp_path, name):
    secret = tmp_path / "secret"
    secret.write_text("from-the-file\n")
    monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(f"{name}_FILE", str(secret))
    # One trailing line end is what editors and echo add: it is not the value.
    assert config.env(name) == "from-the-file"


def test_a_setting_and_its_file_together_are_refused(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("one")
    monkeypatch.setenv("SECRET_KEY", "two")
    monkeypatch.setenv("SECRET_KEY_FILE", str(secret))
    with pytest.raises(config.ConfigError, match="^Set SECRET_KEY or SECRET_KEY_FILE"):
        config.env("SECRET_KEY")


def test_a_secret_file_that_cannot_be_read_stops_the_start(monkeypatch, tmp_path):
    monkeypatch.setenv("SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(config.ConfigError, match="^SECRET_KEY_FILE cannot be read: "):
        config.from_environment(str(tmp_path))


def test_settings_that_are_not_secrets_are_never_read_from_files(monkeypatch, tmp_path):
    secret = tmp_path / "value"
    secret.write_text("999")
    monkeypatch.setenv("TOKEN_TTL_SECONDS_FILE", str(secret))
    assert config.env("TOKEN_TTL_SECONDS") is None


def test_database_password_goes_into_the_url(monkeypatch, tmp_path):
    secret = tmp_path / "db_password"
    secret.write_text("p@ss:w/rd\n")
    monkeypatch.setenv("DATABASE_URL", "mysql://lockbox@db/lockbox")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret))
    url = sa.engine.make_url(
        config.from_environment(str(tmp_path))["SQLALCHEMY_DATABASE_URI"]
    )
    assert (url.username, url.password, url.host) == ("lockbox", "p@ss:w/rd", "db")


def test_a_password_in_the_url_and_another_beside_it_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "mysql://lockbox:one@db/lockbox")
    monkeypatch.setenv("DATABASE_PASSWORD", "two")
    with pytest.raises(config.ConfigError, match="DATABASE_URL holds a password"):
        config.from_environment(str(tmp_path))


def test_a_missing_secret_key_file_refuses_to_start_the_server(tmp_path):
    # The container's start: gunicorn with the shipped settings says why, in
    # one line, and stops.
    env = {
        **os.environ,
        "SECRET_KEY_FILE": str(tmp_path / "missing"),
        "RATELIMIT_STORAGE_URI_FILE": str(tmp_path / "missing-too"),
    }
    env.pop("SECRET_KEY", None)
    env.pop("RATELIMIT_STORAGE_URI", None)
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    done = refused_start([*gunicorn, "app:create_app()"], env, timeout=60)
    assert "Lockbox cannot start: RATELIMIT_STORAGE_URI_FILE cannot be read" in (
        done.stdout + done.stderr
    )
