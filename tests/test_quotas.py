"""Storage quotas and the size limit of one file: GET /account, `users
set-quota`, `users list`, and uploads refused or ended when they do not fit."""

import io

import pytest

import quotas
from formats import human_size
from helpers import (
    CHUNK,
    bearer,
    create_upload,
    end,
    multipart_upload,
    new_upload,
    part,
    random_bytes,
    row_counts,
    rows_of,
    send_piece,
    set_expiry,
    tus_headers,
    tus_upload,
    upload_count,
    upload_row,
    uploaded,
)
from models import StoredFile, db

QUOTA = 10000
WITH_QUOTA = pytest.mark.parametrize(
    "app_settings",
    [{"STORAGE_QUOTA_BYTES": QUOTA, "CHUNK_SIZE": CHUNK}],
    ids=["quota10000"],
)
MAX_SIZE = 10000
WITH_MAX_FILE_SIZE = pytest.mark.parametrize(
    "app_settings",
    [{"MAX_FILE_SIZE": MAX_SIZE, "CHUNK_SIZE": CHUNK}],
    ids=["max10000"],
)


def account(client, token) -> dict:
    """GET /account, which must answer."""
    response = client.get("/account", headers=bearer(token))
    assert response.status_code == 200
    return response.get_json()


def set_quota(runner, size, name="alice"):
    """Run ``users set-quota NAME SIZE``; the result."""
    return runner.invoke(args=["users", "set-quota", "--", name, size])


def quota_exceeded(used: int, quota: int = QUOTA) -> dict:
    """The body of the 413 for an account without room."""
    said = f"{human_size(used)} of {human_size(quota)} used"
    return {"message": f"Storage quota exceeded: {said} ({used} of {quota} bytes)"}


def connections_in_use(app) -> int:
    """How many of the app's database connections are checked out now."""
    with app.app_context():
        return db.engine.pool.checkedout()


def streamed_form_upload(client, token, content: bytes):
    """A multipart upload sent without Content-Length; the response."""
    body = part("inputFile", content, filename="streamed.bin") + end()
    return client.post(
        "/upload",
        headers=bearer(token),
        input_stream=io.BytesIO(body),
        content_type="multipart/form-data; boundary=XyZ",
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )


# --- GET /account ---------------------------------------------------------------


def test_account_reports_usage_and_limits(app, client, token):
    assert account(client, token) == {
        "username": "alice",
        "role": "user",
        "has_password": True,
        "single_sign_on": False,
        "two_factor": False,
        "used_bytes": 0,
        "quota_bytes": None,
        "max_file_size": app.config["MAX_FILE_SIZE"],
        "file_lifetime_seconds": None,
        "max_file_seconds": None,
    }
    uploaded(client, token, b"hello")
    tus_upload(client, token, b"resumable")
    assert account(client, token)["used_bytes"] == 5 + 9


def test_account_needs_a_token(client, token):
    assert client.get("/account").status_code == 401


@pytest.mark.parametrize(
    "app_settings", [{"STORAGE_QUOTA_BYTES": QUOTA, "MAX_FILE_SIZE": 5000}]
)
def test_the_configured_quota_applies_to_every_account(auth, client, token):
    auth.create_user("bob")
    for name in ("alice", "bob"):
        body = account(client, auth.token(name))
        assert (body["quota_bytes"], body["max_file_size"]) == (QUOTA, 5000)


# --- users set-quota and users list ----------------------------------------------


@pytest.mark.parametrize(
    "size, quota",
    [
        ("10KiB", 10 * 1024),
        ("500MB", 500 * 1000**2),
        ("10GiB", 10 * 1024**3),
        ("123456", 123456),
    ],
)
def test_set_quota_takes_sizes_as_people_write_them(runner, client, token, size, quota):
    result = set_quota(runner, size)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Quota for alice: ")
    assert account(client, token)["quota_bytes"] == quota


@WITH_QUOTA
def test_set_quota_0_lifts_the_limit_for_that_user_only(auth, client, runner, token):
    assert set_quota(runner, "0").exit_code == 0
    assert account(client, token)["quota_bytes"] is None
    assert create_upload(client, token, 5 * QUOTA).status_code == 201
    auth.create_user("bob")
    assert account(client, auth.token("bob"))["quota_bytes"] == QUOTA


@WITH_QUOTA
def test_set_quota_default_goes_back_to_the_configured_quota(runner, client, token):
    set_quota(runner, "20000")
    assert account(client, token)["quota_bytes"] == 20000
    result = set_quota(runner, "default")
    assert result.exit_code == 0, result.output
    assert account(client, token)["quota_bytes"] == QUOTA


@pytest.mark.parametrize("size", ["lots", "10XB", "-5", "1.5.5GB", ""])
def test_set_quota_refuses_a_bad_size(runner, client, token, size):
    set_quota(runner, "1MB")
    result = set_quota(runner, size)
    assert result.exit_code != 0
    assert "is not a size" in result.output
    assert account(client, token)["quota_bytes"] == 1000**2


@WITH_QUOTA
def test_users_list_shows_usage_and_quota(auth, client, runner, token):
    uploaded(client, token, b"hello")
    auth.create_user("bob")
    set_quota(runner, "0", name="bob")
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0, result.output
    alice, bob = result.output.splitlines()
    assert alice.startswith("alice\t")
    assert alice.endswith("\t1 files\t5 B used of 9.8 KiB (10000 bytes)")
    assert bob.endswith("\t0 files\t0 B used no quota")


# --- what counts ------------------------------------------------------------------


def test_a_tus_upload_counts_its_length_from_creation(client, token):
    path = new_upload(client, token, 6000)
    assert account(client, token)["used_bytes"] == 6000
    send_piece(client, path, 0, b"x" * 100)
    assert account(client, token)["used_bytes"] == 6000
    send_piece(client, path, 100, b"x" * 5900)
    assert account(client, token)["used_bytes"] == 6000


def test_a_deferred_upload_counts_what_it_stored_then_its_length(client, token):
    path = new_upload(client, token)
    assert account(client, token)["used_bytes"] == 0
    send_piece(client, path, 0, b"x" * 3000)
    assert account(client, token)["used_bytes"] == 3000
    send_piece(client, path, 3000, b"x" * 10, Upload_Length=8000)
    assert account(client, token)["used_bytes"] == 8000


def test_a_form_upload_counts_its_size_once_finished(client, token):
    uploaded(client, token, random_bytes(5000))
    assert account(client, token)["used_bytes"] == 5000


# --- over the quota ---------------------------------------------------------------


@WITH_QUOTA
def test_a_tus_upload_that_does_not_fit_is_refused_at_creation(app, client, token):
    uploaded(client, token, random_bytes(6000))
    response = create_upload(client, token, QUOTA - 6000 + 1)
    assert response.status_code == 413
    assert response.get_json() == quota_exceeded(6000)
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert upload_count(app) == 0
    assert row_counts(app) == (1, 2)
    assert create_upload(client, token, QUOTA - 6000).status_code == 201


@WITH_QUOTA
def test_a_second_reservation_over_the_quota_is_refused(app, client, token):
    first = new_upload(client, token, 6000)
    response = create_upload(client, token, 6000)
    assert response.status_code == 413
    assert response.get_json() == quota_exceeded(6000)
    assert upload_count(app) == 1
    # The first upload still has all its room.
    send_piece(client, first, 0, b"x" * 6000)
    assert account(client, token)["used_bytes"] == 6000


@WITH_QUOTA
def test_a_form_upload_whose_content_length_does_not_fit_is_refused(app, client, token):
    uploaded(client, token, random_bytes(6000))
    response = multipart_upload(client, token, random_bytes(4500))
    assert response.status_code == 413
    assert response.get_json() == quota_exceeded(6000)
    assert row_counts(app) == (1, 2)
    assert account(client, token)["used_bytes"] == 6000


@WITH_QUOTA
def test_a_form_upload_without_content_length_is_stopped_at_the_quota(
    app, client, token
):
    response = streamed_form_upload(client, token, random_bytes(QUOTA + 1))
    assert response.status_code == 413
    assert response.get_json() == quota_exceeded(0)
    assert row_counts(app) == (0, 0)
    assert streamed_form_upload(client, token, random_bytes(QUOTA)).status_code == 201


def send_pieces(client, path, pieces):
    """Send pieces of ``pieces`` bytes; all but the last must be taken. The
    last one's answer."""
    offset = 0
    for size in pieces[:-1]:
        assert send_piece(client, path, offset, b"x" * size).status_code == 204
        offset += size
    return send_piece(client, path, offset, b"x" * pieces[-1])


@WITH_QUOTA
@pytest.mark.parametrize("pieces", [(6000, 6000), (12000,)], ids=["two", "one"])
def test_a_deferred_upload_going_over_the_quota_is_removed(app, client, token, pieces):
    path = new_upload(client, token)
    file_id = upload_row(app, path).file_id
    response = send_pieces(client, path, pieces)
    assert response.status_code == 413
    assert response.get_json() == quota_exceeded(0)
    assert client.head(path, headers=tus_headers()).status_code == 404
    assert upload_count(app) == 0
    assert rows_of(app, file_id) == (0, 0)
    assert account(client, token)["used_bytes"] == 0


@WITH_QUOTA
def test_an_upload_refused_for_room_stops_counting_before_it_is_removed(
    app, client, token
):
    """Between the refusal and the removal of its chunks, the refused upload
    holds nothing: uploads growing at the same moment, each refused in turn
    while the others' bytes still counted, would otherwise all fail."""
    path = new_upload(client, token)
    assert send_piece(client, path, 0, b"x" * 3000).status_code == 204
    file_id = upload_row(app, path).file_id
    with app.app_context():
        stored_file = db.session.get_one(StoredFile, file_id)
        limit = quotas.SizeLimit(stored_file)
        with pytest.raises(quotas.NoRoom):
            limit.admit(QUOTA + 1)
        db.session.rollback()
        assert quotas.usage_of(stored_file.owner_id) == 0
    assert rows_of(app, file_id)[1] > 0  # its chunks are still there


@WITH_QUOTA
def test_a_deferred_first_piece_over_the_quota_creates_nothing(app, client, token):
    response = create_upload(client, token, None, body=b"x" * (QUOTA + 1))
    assert response.status_code == 413
    assert response.get_json() == quota_exceeded(0)
    assert upload_count(app) == 0
    assert row_counts(app) == (0, 0)


@WITH_QUOTA
def test_a_deferred_length_that_does_not_fit_is_a_413(app, client, token):
    uploaded(client, token, random_bytes(6000))
    path = new_upload(client, token)
    send_piece(client, path, 0, b"x" * 100)
    response = send_piece(client, path, 100, b"x" * 100, Upload_Length=5000)
    assert response.status_code == 413
    assert response.get_json() == quota_exceeded(6000)
    # The upload keeps what it held while its first piece arrived: its 100
    # bytes and an eighth of the room that was left after them.
    held = 100 + (QUOTA - 6000 - 100) // quotas.HOLD_AHEAD_SHARE
    assert account(client, token)["used_bytes"] == 6000 + held


@WITH_QUOTA
def test_deleting_a_file_frees_its_space(client, token):
    file_id = uploaded(client, token, random_bytes(8000))["id"]
    assert create_upload(client, token, 3000).status_code == 413
    assert client.delete(f"/files/{file_id}", headers=bearer(token)).status_code == 204
    assert account(client, token)["used_bytes"] == 0
    assert create_upload(client, token, QUOTA).status_code == 201


@WITH_QUOTA
def test_terminating_an_upload_frees_its_reservation(client, token):
    path = new_upload(client, token, 8000)
    assert create_upload(client, token, 3000).status_code == 413
    assert client.delete(path, headers=tus_headers()).status_code == 204
    assert account(client, token)["used_bytes"] == 0
    assert create_upload(client, token, QUOTA).status_code == 201


@WITH_QUOTA
def test_one_accounts_usage_does_not_count_against_another(auth, client, token):
    new_upload(client, token, QUOTA)
    auth.create_user("bob")
    assert create_upload(client, auth.token("bob"), QUOTA).status_code == 201


# --- the size limit of one file ---------------------------------------------------


@WITH_MAX_FILE_SIZE
def test_an_upload_length_over_max_file_size_is_a_413(app, client, token):
    response = create_upload(client, token, MAX_SIZE + 1)
    assert response.status_code == 413
    assert response.get_json() == {
        "message": f"File too large: the limit is 9.8 KiB ({MAX_SIZE} bytes)"
    }
    assert upload_count(app) == 0
    assert row_counts(app) == (0, 0)
    assert create_upload(client, token, MAX_SIZE).status_code == 201


@WITH_MAX_FILE_SIZE
@pytest.mark.parametrize(
    "pieces", [(6000, 6000), (MAX_SIZE + 1,)], ids=["two-pieces", "one-piece"]
)
def test_a_deferred_upload_growing_past_max_file_size_is_removed(
    app, client, token, pieces
):
    path = new_upload(client, token)
    file_id = upload_row(app, path).file_id
    response = send_pieces(client, path, pieces)
    assert response.status_code == 413
    assert response.get_json() == {
        "message": f"File too large: the limit is 9.8 KiB ({MAX_SIZE} bytes)"
    }
    assert client.head(path, headers=tus_headers()).status_code == 404
    assert rows_of(app, file_id) == (0, 0)
    assert connections_in_use(app) == 0


@WITH_MAX_FILE_SIZE
def test_a_first_piece_past_max_file_size_creates_nothing(app, client, token):
    response = create_upload(client, token, None, body=b"x" * (MAX_SIZE + 1))
    assert response.status_code == 413
    assert upload_count(app) == 0
    assert row_counts(app) == (0, 0)
    assert connections_in_use(app) == 0


# --- space held by unfinished uploads -------------------------------------------


def test_empty_patches_do_not_keep_an_idle_upload_alive(app, client, token):
    path = new_upload(client, token)
    send_piece(client, path, 0, b"x" * 3000)
    set_expiry(app, path, 30)
    expires_at = upload_row(app, path).expires_at
    for _ in range(3):
        assert send_piece(client, path, 3000, b"").status_code == 204
    assert upload_row(app, path).expires_at == expires_at
    # A piece with bytes in it is use: the expiry moves on.
    assert send_piece(client, path, 3000, b"y").status_code == 204
    assert upload_row(app, path).expires_at > expires_at


@WITH_QUOTA
@pytest.mark.parametrize("length", [None, 9000], ids=["deferred", "announced"])
def test_an_expired_upload_no_longer_holds_the_owners_space(app, client, token, length):
    path = new_upload(client, token, length)
    send_piece(client, path, 0, b"x" * 8000)
    assert create_upload(client, token, 3000).status_code == 413
    set_expiry(app, path, -1)
    assert account(client, token)["used_bytes"] == 0
    assert create_upload(client, token, QUOTA).status_code == 201
