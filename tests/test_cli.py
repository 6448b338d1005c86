"""The command-line tasks: init-db, users ..., files gc."""

import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

import cli
from helpers import PASSWORD, basic_auth
from models import FileChunk, StoredFile, User, db, utcnow

NEW_PASSWORD = "longpassword"


@pytest.fixture
def tty_stdin(monkeypatch):
    """Make ``users create`` believe stdin is a terminal, so it prompts twice."""
    monkeypatch.setattr(cli, "_stdin_is_terminal", lambda: True)


def usernames(app):
    """The names of every user in the database, sorted."""
    with app.app_context():
        return sorted(db.session.execute(db.select(User.username)).scalars())


def count_rows(app, model):
    """How many rows the table of ``model`` holds."""
    with app.app_context():
        return db.session.execute(
            db.select(sa.func.count()).select_from(model)
        ).scalar()


def upload(client, token, content=b"some bytes", filename="a.txt"):
    """Upload one file through the API; the response."""
    return client.post(
        f"/upload?token={token}",
        data={"inputFile": (io.BytesIO(content), filename)},
        content_type="multipart/form-data",
    )


def create_with_cli(runner, name, password=NEW_PASSWORD):
    """Run ``users create NAME`` with the password piped on stdin."""
    return runner.invoke(args=["users", "create", name], input=f"{password}\n")


# --- init-db -----------------------------------------------------------------


def test_init_db_runs_under_the_test_cli_runner(app, runner):
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, repr(result.exception)
    assert "Database ready" in result.output


def test_init_db_creates_missing_tables_and_can_run_again(app, runner):
    # The app context is pushed here: see test_init_db_runs_under_the_test_cli_runner.
    with app.app_context():
        db.drop_all()
        try:
            first = runner.invoke(args=["init-db"])
            second = runner.invoke(args=["init-db"])
            tables = set(sa.inspect(db.engine).get_table_names())
        finally:
            db.create_all()
    assert first.exit_code == 0, repr(first.exception)
    assert second.exit_code == 0, repr(second.exception)
    assert "Database ready" in second.output
    assert {"user", "stored_file", "file_chunk"} <= tables


def test_init_db_names_the_database_it_prepared(app, runner):
    with app.app_context():
        result = runner.invoke(args=["init-db"])
        shown = db.engine.url.render_as_string(hide_password=True)
    assert result.exit_code == 0, repr(result.exception)
    assert f"Database ready: {shown}" in result.output


# --- users create ------------------------------------------------------------


def test_create_user_reads_the_password_from_a_pipe(app, runner):
    result = create_with_cli(runner, "carol")
    assert result.exit_code == 0, result.output
    assert "Created user carol" in result.output
    assert usernames(app) == ["carol"]


def test_created_user_can_log_in(runner, client):
    create_with_cli(runner, "carol")
    response = client.get("/login", headers=basic_auth("carol", NEW_PASSWORD))
    assert response.status_code == 200
    assert response.get_json()["token_type"] == "Bearer"


def test_password_piped_with_crlf_loses_the_line_ending(runner, client):
    runner.invoke(args=["users", "create", "carol"], input=f"{NEW_PASSWORD}\r\n")
    response = client.get("/login", headers=basic_auth("carol", NEW_PASSWORD))
    assert response.status_code == 200


def test_create_user_on_a_terminal_prompts_twice(app, runner, client, tty_stdin):
    result = runner.invoke(
        args=["users", "create", "carol"], input="pw12345678\npw12345678\n"
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("Password") == 1
    assert "Repeat for confirmation" in result.output
    assert usernames(app) == ["carol"]
    response = client.get("/login", headers=basic_auth("carol", "pw12345678"))
    assert response.status_code == 200


def test_create_user_on_a_terminal_with_mismatching_confirmation_fails(
    app, runner, tty_stdin
):
    result = runner.invoke(
        args=["users", "create", "carol"], input="pw12345678\npw87654321\n"
    )
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert usernames(app) == []


def test_create_user_on_a_terminal_with_a_short_password_is_refused(
    app, runner, tty_stdin
):
    result = runner.invoke(args=["users", "create", "carol"], input="short\nshort\n")
    assert result.exit_code != 0
    assert "at least 8 characters" in result.output
    assert usernames(app) == []


def test_duplicate_username_is_refused(app, runner, client):
    create_with_cli(runner, "carol")
    result = create_with_cli(runner, "carol", password="another password")
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert usernames(app) == ["carol"]
    # The first password still holds.
    response = client.get("/login", headers=basic_auth("carol", NEW_PASSWORD))
    assert response.status_code == 200


@pytest.mark.parametrize("password", ["", "1234567", "short"])
def test_password_shorter_than_eight_characters_is_refused(app, runner, password):
    result = create_with_cli(runner, "carol", password=password)
    assert result.exit_code != 0
    assert "at least 8 characters" in result.output
    assert usernames(app) == []


@pytest.mark.parametrize(
    "name",
    ["", "-x", ".hidden", "a b", "x" * 81, "a:b", "a/b", "ünïcode", "\nbob"],
    ids=[
        "empty",
        "leading-dash",
        "leading-dot",
        "space",
        "81-chars",
        "colon",
        "slash",
        "non-ascii",
        "leading-newline",
    ],
)
def test_invalid_username_is_refused(app, runner, name):
    # "--" so that "-x" reaches the command as a name, not as an option.
    result = runner.invoke(args=["users", "create", "--", name], input="longpassword\n")
    assert result.exit_code != 0
    assert "A username is 1-80 characters" in result.output
    assert usernames(app) == []


def test_username_with_a_trailing_newline_is_refused(app, runner):
    result = runner.invoke(args=["users", "create", "bob\n"], input="longpassword\n")
    assert result.exit_code != 0
    assert "A username is 1-80 characters" in result.output
    assert usernames(app) == []


@pytest.mark.parametrize("name", ["x", "x" * 80, "a.b_c-d+e@f", "0day"])
def test_valid_usernames_are_accepted(app, runner, name):
    result = create_with_cli(runner, name)
    assert result.exit_code == 0, result.output
    assert usernames(app) == [name]


# --- users list --------------------------------------------------------------


def test_list_users_when_there_are_none_says_so(runner):
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0
    assert result.output.strip() == "No users."


def test_list_users_shows_names_and_file_counts(auth, client, runner):
    auth.create_user("alice")
    auth.create_user("bob")
    token = auth.token("alice")
    assert upload(client, token, filename="one.txt").status_code == 201
    assert upload(client, token, filename="two.txt").status_code == 201
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("alice\tuser\tpassword\t")
    assert lines[0].endswith("\t2 files\t20 B used no quota")
    assert lines[1].startswith("bob\t")
    assert lines[1].endswith("\t0 files\t0 B used no quota")
    assert "No users." not in result.output


def test_list_users_does_not_count_unfinished_uploads(app, auth, runner):
    user_id = auth.create_user("alice")
    with app.app_context():
        db.session.add(StoredFile(owner_id=user_id, filename="x", complete=False))
        db.session.commit()
    result = runner.invoke(args=["users", "list"])
    assert result.output.strip().endswith("\t0 files\t0 B used no quota")


# --- users set-password ------------------------------------------------------


def test_set_password_replaces_the_old_password(auth, runner):
    auth.create_user("alice")
    result = runner.invoke(
        args=["users", "set-password", "alice"], input=f"{NEW_PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert "Password changed for alice" in result.output
    assert auth.login("alice", PASSWORD).status_code == 401
    assert auth.login("alice", NEW_PASSWORD).status_code == 200


def test_set_password_too_short_keeps_the_old_one(auth, runner):
    auth.create_user("alice")
    result = runner.invoke(args=["users", "set-password", "alice"], input="short\n")
    assert result.exit_code != 0
    assert "at least 8 characters" in result.output
    assert auth.login("alice", PASSWORD).status_code == 200


def test_set_password_for_an_unknown_user_fails(auth, runner):
    auth.create_user("alice")
    result = runner.invoke(
        args=["users", "set-password", "mallory"], input=f"{NEW_PASSWORD}\n"
    )
    assert result.exit_code != 0
    assert "No user named 'mallory'" in result.output
    assert auth.login("alice", PASSWORD).status_code == 200


# --- users delete ------------------------------------------------------------


@pytest.fixture
def two_users_with_files(app, auth, client):
    """alice and bob, each with one uploaded file; their ids and tokens."""
    ids = {name: auth.create_user(name) for name in ("alice", "bob")}
    tokens = {name: auth.token(name) for name in ids}
    for name, token in tokens.items():
        response = upload(client, token, content=name.encode() * 100)
        assert response.status_code == 201, response.get_json()
    return ids, tokens


def owned_rows(app, user_id):
    """(stored_file rows, file_chunk rows) belonging to ``user_id``."""
    with app.app_context():
        file_ids = db.select(StoredFile.id).where(StoredFile.owner_id == user_id)
        files = db.session.execute(
            db.select(sa.func.count())
            .select_from(StoredFile)
            .where(StoredFile.owner_id == user_id)
        ).scalar()
        chunks = db.session.execute(
            db.select(sa.func.count())
            .select_from(FileChunk)
            .where(FileChunk.file_id.in_(file_ids))
        ).scalar()
    return files, chunks


def test_delete_user_removes_the_user(app, runner, two_users_with_files):
    result = runner.invoke(args=["users", "delete", "alice", "--yes"])
    assert result.exit_code == 0, result.output
    assert "Deleted user alice" in result.output
    assert usernames(app) == ["bob"]


def test_delete_user_removes_their_files_and_chunks(app, runner, two_users_with_files):
    ids, _ = two_users_with_files
    assert owned_rows(app, ids["alice"]) != (0, 0)
    runner.invoke(args=["users", "delete", "alice", "--yes"])
    assert owned_rows(app, ids["alice"]) == (0, 0)
    # No chunk survives without its file, whatever its owner.
    with app.app_context():
        orphans = db.session.execute(
            db.select(sa.func.count())
            .select_from(FileChunk)
            .where(~FileChunk.file_id.in_(db.select(StoredFile.id)))
        ).scalar()
    assert orphans == 0


def test_delete_user_keeps_other_users_files(app, runner, two_users_with_files):
    ids, _ = two_users_with_files
    before = owned_rows(app, ids["bob"])
    runner.invoke(args=["users", "delete", "alice", "--yes"])
    assert owned_rows(app, ids["bob"]) == before
    assert before[0] == 1 and before[1] >= 1


def test_token_of_a_user_deleted_with_the_cli_is_refused(
    client, runner, two_users_with_files
):
    _, tokens = two_users_with_files
    assert client.get(f"/?token={tokens['alice']}").status_code == 200
    runner.invoke(args=["users", "delete", "alice", "--yes"])
    response = client.get(f"/?token={tokens['alice']}")
    assert response.status_code == 401
    assert response.get_json() == {"message": "Invalid token"}
    assert client.get(f"/?token={tokens['bob']}").status_code == 200


def test_delete_an_unknown_user_fails(app, auth, runner):
    auth.create_user("alice")
    result = runner.invoke(args=["users", "delete", "mallory", "--yes"])
    assert result.exit_code != 0
    assert "No user named 'mallory'" in result.output
    assert usernames(app) == ["alice"]


# --- users bootstrap ---------------------------------------------------------


def test_bootstrap_creates_admin_with_a_printed_password(app, runner, client):
    result = runner.invoke(args=["users", "bootstrap"])
    assert result.exit_code == 0, result.output
    assert re.search(r"username: admin$", result.output, re.MULTILINE)
    password = re.search(r"password: (\S+)$", result.output, re.MULTILINE).group(1)
    assert len(password) >= 8
    assert usernames(app) == ["admin"]
    response = client.get("/login", headers=basic_auth("admin", password))
    assert response.status_code == 200


def test_bootstrap_generates_a_different_password_each_time(app, runner):
    passwords = []
    for _ in range(2):
        result = runner.invoke(args=["users", "bootstrap"])
        passwords.append(re.search(r"password: (\S+)", result.output).group(1))
        with app.app_context():
            db.session.execute(db.delete(User))
            db.session.commit()
    assert passwords[0] != passwords[1]


def test_bootstrap_does_nothing_when_a_user_exists(app, auth, runner):
    auth.create_user("alice")
    result = runner.invoke(args=["users", "bootstrap"])
    assert result.exit_code == 0
    assert "nothing to do" in result.output
    assert "password" not in result.output
    assert usernames(app) == ["alice"]


# --- files gc ----------------------------------------------------------------


@pytest.fixture
def uploads_in_every_state(app, auth):
    """A stale and a fresh unfinished upload and a complete file, with chunks."""
    owner_id = auth.create_user("alice")
    now = utcnow()
    states = {
        "stale": dict(complete=False, updated_at=now - timedelta(hours=2)),
        "fresh": dict(complete=False, updated_at=now),
        "complete": dict(complete=True, updated_at=now - timedelta(days=30)),
    }
    ids = {}
    with app.app_context():
        for name, state in states.items():
            stored_file = StoredFile(owner_id=owner_id, filename=f"{name}.bin", **state)
            db.session.add(stored_file)
            db.session.flush()
            for seq in range(2):
                db.session.add(
                    FileChunk(file_id=stored_file.id, seq=seq, data=b"x" * 10)
                )
            ids[name] = stored_file.id
        db.session.commit()
    return ids


def remaining(app):
    """{file id: number of its chunks} for every stored file left."""
    with app.app_context():
        file_ids = db.session.execute(db.select(StoredFile.id)).scalars().all()
        return {
            file_id: db.session.execute(
                db.select(sa.func.count())
                .select_from(FileChunk)
                .where(FileChunk.file_id == file_id)
            ).scalar()
            for file_id in file_ids
        }


def test_gc_removes_only_stale_unfinished_uploads(app, runner, uploads_in_every_state):
    ids = uploads_in_every_state
    result = runner.invoke(args=["files", "gc"])
    assert result.exit_code == 0, result.output
    assert "Removed 1 unfinished uploads" in result.output
    assert remaining(app) == {ids["fresh"]: 2, ids["complete"]: 2}
    assert count_rows(app, FileChunk) == 4


def test_gc_with_idle_zero_removes_fresh_unfinished_uploads_too(
    app, runner, uploads_in_every_state
):
    ids = uploads_in_every_state
    runner.invoke(args=["files", "gc"])
    result = runner.invoke(args=["files", "gc", "--idle", "0"])
    assert result.exit_code == 0, result.output
    assert "Removed 1 unfinished uploads" in result.output
    assert remaining(app) == {ids["complete"]: 2}


def test_gc_never_touches_complete_files(app, runner, uploads_in_every_state):
    ids = uploads_in_every_state
    runner.invoke(args=["files", "gc", "--idle", "0"])
    assert remaining(app) == {ids["complete"]: 2}
    with app.app_context():
        assert db.session.get(StoredFile, ids["complete"]).complete is True


def test_gc_refuses_a_negative_idle_time(app, runner, uploads_in_every_state):
    result = runner.invoke(args=["files", "gc", "--idle", "-1"])
    assert result.exit_code == 2
    assert len(remaining(app)) == 3


def test_gc_keeps_files_uploaded_through_the_api(app, auth, client, runner):
    auth.create_user("alice")
    token = auth.token("alice")
    assert upload(client, token).status_code == 201
    runner.invoke(args=["files", "gc", "--idle", "0"])
    assert count_rows(app, StoredFile) == 1
    assert count_rows(app, FileChunk) == 1
