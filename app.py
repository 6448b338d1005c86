"""Lockbox: sign in, get a JSON Web Token, keep your files in MySQL.

Run it with ``flask --app app run``, ``gunicorn 'app:create_app()'``
or ``python app.py``.
"""

import os

from dotenv import load_dotenv
from flask import Flask
from flask_migrate import Migrate
from werkzeug.middleware.proxy_fix import ProxyFix

import access_tokens
import account
import admin
import authentication
import cli
import cluster
import config
import errors
import files
import formats
import logs
import metrics
import models
import monitoring
import notifications
import oidc
import openapi
import page_sessions
import rate_limits
import request_data
import security
import shares
import sso
import startup
import storage_keys
import upload_requests
import uploads
import webhooks
from models import db, ma


def create_app(test_config: dict | None = None) -> Flask:
    """Build and configure the application: a table of contents."""
    app = Flask(__name__, instance_relative_config=True)
    load_config(app, test_config)
    register_extensions(app)
    register_blueprints(app)
    errors.init_app(app)
    request_data.init_app(app)
    cli.init_app(app)
    with app.app_context():
        # A missing or wrong storage key stops the app here (storage_keys.py).
        storage_keys.check_at_start()
    return app


def load_config(app: Flask, test_config: dict | None) -> None:
    """Settings from the environment (and .env), checked; tests pass their own."""
    if test_config is None:
        # .env next to the app; real environment variables win over it.
        load_dotenv(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".env"))
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(config.from_environment(app.instance_path))
    if test_config is not None:
        app.config.from_mapping(test_config)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **config.engine_options(app.config["SQLALCHEMY_DATABASE_URI"]),
        **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }
    for warning in config.check(app.config, relaxed=app.debug or app.testing):
        app.logger.warning("%s", warning)
    if app.config.get("TRUSTED_PROXIES"):
        # Behind N reverse proxies: take the client address (for the sign-in
        # limits and the logs), scheme, host and port (for the links written
        # out) from their X-Forwarded-* headers.
        hops = app.config["TRUSTED_PROXIES"]
        # Flask's documented way to add WSGI middleware; mypy refuses any
        # assignment to a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )


def register_extensions(app: Flask) -> None:
    """The database (before marshmallow), migrations, logs, headers."""
    models.init_app(app)
    cluster.init_app(app)
    # SQLite cannot ALTER most things in place: batch mode copies the table.
    Migrate(app, db, directory=startup.MIGRATIONS, render_as_batch=True)
    ma.init_app(app)
    logs.init_app(app)
    security.init_app(app)
    formats.init_app(app)


def register_blueprints(app: Flask) -> None:
    """Sign-in (and the page session's hooks), files, resumable uploads, the
    account, share links, upload requests, personal access tokens, webhooks
    (and their sender), health checks and the API description; the limits on
    guessing passwords."""
    app.register_blueprint(authentication.bp)
    page_sessions.init_app(app)
    app.register_blueprint(files.bp)
    app.register_blueprint(uploads.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(shares.bp)
    app.register_blueprint(upload_requests.bp)
    app.register_blueprint(access_tokens.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(sso.bp)
    oidc.init_app(app)
    notifications.init_app(app)
    monitoring.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(openapi.bp)
    rate_limits.init_app(app)


if __name__ == "__main__":
    # The tutorial's way to start it; the debugger only with FLASK_DEBUG=1.
    try:
        lockbox = create_app()
    except config.ConfigError as error:
        raise SystemExit(f"Lockbox cannot start: {error}") from None
    lockbox.run(debug=os.environ.get("FLASK_DEBUG") == "1")
