"""The baseline for ``GET /files``: the same listing written the usual way.

Flask-SQLAlchemy, flask-marshmallow and Flask-JWT-Extended as their docs show
them, nothing slowed down and nothing hand-optimised, reading Lockbox's own
``user`` and ``stored_file`` tables. Served by the same gunicorn command line
as Lockbox, with the same environment (``SECRET_KEY``, ``DATABASE_URL``):

    gunicorn -c gunicorn.conf.py 'bench.peer_app:create_app()'

It only reads: Lockbox's migrations own the schema, and its uploads the rows.
"""

import os
from datetime import UTC, datetime

from flask import Blueprint, Flask, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    get_jwt_identity,
    jwt_required,
)
from flask_marshmallow import Marshmallow
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, ForeignKey, String, or_
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.security import check_password_hash


class Base(DeclarativeBase):
    """Declarative base for the peer's models."""


db = SQLAlchemy(model_class=Base)
ma = Marshmallow()
jwt = JWTManager()
bp = Blueprint("peer", __name__)


class User(db.Model):
    """Lockbox's ``user`` table, the columns signing in needs."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))


class StoredFile(db.Model):
    """Lockbox's ``stored_file`` table, the columns the listing needs."""

    __tablename__ = "stored_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    filename: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    complete: Mapped[bool]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]


class StoredFileSchema(ma.SQLAlchemySchema):
    """A file as the listing shows it: the fields of Lockbox's StoredFileSchema."""

    class Meta:
        model = StoredFile

    id = ma.auto_field()
    filename = ma.auto_field()
    description = ma.auto_field()
    content_type = ma.auto_field()
    size = ma.auto_field()
    sha256 = ma.auto_field()
    created_at = ma.auto_field()
    expires_at = ma.auto_field()


files_schema = StoredFileSchema(many=True)


@bp.get("/login")
def login():
    """An access token for HTTP Basic credentials."""
    auth = request.authorization
    if auth is None:
        return {"msg": "Missing credentials"}, 401
    user = db.session.execute(
        db.select(User).filter_by(username=auth.username)
    ).scalar_one_or_none()
    if user is None or not check_password_hash(user.password_hash, auth.password):
        return {"msg": "Bad username or password"}, 401
    return {"token": create_access_token(identity=str(user.id))}


@bp.get("/files")
@jwt_required()
def list_files():
    """The caller's finished files, newest first, a page at a time."""
    # Not expired, as Lockbox lists them (times kept as naive UTC).
    now = datetime.now(UTC).replace(tzinfo=None)
    page = db.paginate(
        db.select(StoredFile)
        .filter_by(owner_id=int(get_jwt_identity()), complete=True)
        .where(or_(StoredFile.expires_at.is_(None), StoredFile.expires_at > now))
        .order_by(StoredFile.created_at.desc(), StoredFile.id.desc())
    )
    return {
        "items": files_schema.dump(page.items),
        "page": page.page,
        "per_page": page.per_page,
        "total": page.total,
    }


def create_app(test_config=None):
    """The peer app, configured from the environment Lockbox reads."""
    app = Flask(__name__)
    app.config.from_mapping(
        JWT_SECRET_KEY=os.environ.get("SECRET_KEY"),
        SQLALCHEMY_DATABASE_URI=os.environ.get("DATABASE_URL"),
    )
    if test_config is not None:
        app.config.update(test_config)
    db.init_app(app)
    ma.init_app(app)
    jwt.init_app(app)
    app.register_blueprint(bp)
    return app
