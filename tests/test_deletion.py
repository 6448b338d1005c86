"""DELETE /files/<id>, and what is not yours or not there: always the same 404."""

import pytest

from helpers import (
    CHUNK,
    NOT_FOUND,
    SMALL_CHUNKS,
    bearer,
    download,
    insert_file,
    random_bytes,
    rows_of,
    uploaded,
    user_id,
)

# --- DELETE /files/<id> ----------------------------------------------------------


@SMALL_CHUNKS
def test_delete_answers_204_with_an_empty_body(client, token, big_file):
    response = client.delete(f"/files/{big_file[0]}", headers=bearer(token))
    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers


@SMALL_CHUNKS
@pytest.mark.parametrize("path", ["/files/{id}", "/files/{id}/download"])
def test_deleted_file_is_404(client, token, big_file, path):
    file_id, _ = big_file
    assert client.delete(f"/files/{file_id}", headers=bearer(token)).status_code == 204
    response = client.get(path.format(id=file_id), headers=bearer(token))
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND


@SMALL_CHUNKS
def test_delete_removes_the_file_and_chunk_rows(app, client, token, big_file):
    file_id, _ = big_file
    assert rows_of(app, file_id) == (1, 4)
    client.delete(f"/files/{file_id}", headers=bearer(token))
    assert rows_of(app, file_id) == (0, 0)


@SMALL_CHUNKS
def test_delete_leaves_other_files_untouched(app, client, auth, token, big_file):
    auth.create_user("bob")
    bob_token = auth.token("bob")
    mine = uploaded(client, token, random_bytes(CHUNK + 1, 1), "mine.bin")
    bobs = uploaded(client, bob_token, random_bytes(CHUNK + 2, 2), "bob.bin")
    client.delete(f"/files/{big_file[0]}", headers=bearer(token))
    assert rows_of(app, mine["id"]) == (1, 2)
    assert rows_of(app, bobs["id"]) == (1, 2)
    kept = download(client, token, mine["id"]).get_data()
    assert kept == random_bytes(CHUNK + 1, 1)


# --- ownership and ids -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/files/{id}"),
        ("GET", "/files/{id}/download"),
        ("DELETE", "/files/{id}"),
    ],
)
def test_another_users_file_is_not_found(client, auth, token, method, path):
    auth.create_user("bob")
    bobs = uploaded(client, auth.token("bob"), b"bob's secret")
    response = client.open(
        path.format(id=bobs["id"]), method=method, headers=bearer(token)
    )
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND


def test_another_users_file_survives_a_delete_attempt(app, client, auth, token):
    auth.create_user("bob")
    bob_token = auth.token("bob")
    bobs = uploaded(client, bob_token, b"bob's secret")
    client.delete(f"/files/{bobs['id']}", headers=bearer(token))
    assert rows_of(app, bobs["id"]) == (1, 1)
    assert download(client, bob_token, bobs["id"]).get_data() == b"bob's secret"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/files/{id}"),
        ("GET", "/files/{id}/download"),
        ("DELETE", "/files/{id}"),
    ],
)
def test_nonexistent_file_is_not_found(client, token, method, path):
    missing = uploaded(client, token)["id"] + 1000
    response = client.open(
        path.format(id=missing), method=method, headers=bearer(token)
    )
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND


@pytest.mark.parametrize("suffix", ["", "/download"])
@pytest.mark.parametrize(
    "file_id", ["0", "-1", "abc", "1.5", "99999999999999999999", "2147483648"]
)
def test_ids_that_are_not_positive_integers_are_a_json_404(
    client, token, file_id, suffix
):
    response = client.get(f"/files/{file_id}{suffix}", headers=bearer(token))
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert set(response.get_json()) == {"message"}


@pytest.mark.parametrize("path", ["/files/{id}", "/files/{id}/download"])
def test_unfinished_upload_is_not_found(app, client, token, path):
    file_id = insert_file(app, user_id(app), b"half", complete=False)
    response = client.get(path.format(id=file_id), headers=bearer(token))
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND
