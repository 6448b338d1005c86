"""GET /files and GET /files/<id>: who sees what, newest first, a page at a time."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from helpers import (
    METADATA_FIELDS,
    bearer,
    insert_file,
    multipart_upload,
    random_bytes,
    recorded_statements,
    rows_of,
    uploaded,
    user_id,
)
from models import StoredFile, User, db

HTML = {"Accept": "text/html"}

# --- authentication ----------------------------------------------------------


ROUTES = [
    ("GET", "/files"),
    ("GET", "/files/{id}"),
    ("GET", "/files/{id}/download"),
    ("DELETE", "/files/{id}"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_routes_without_a_token_are_401(app, client, token, method, path):
    file_id = uploaded(client, token)["id"]
    response = client.open(path.format(id=file_id), method=method)
    assert response.status_code == 401
    assert response.get_json() == {"message": "Token missing"}
    assert rows_of(app, file_id) == (1, 1)


@pytest.mark.parametrize("via", ["query", "bearer"])
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [(method, path, 204 if method == "DELETE" else 200) for method, path in ROUTES],
)
def test_routes_accept_a_query_or_bearer_token(
    client, token, method, path, status, via
):
    file_id = uploaded(client, token)["id"]
    if via == "query":
        kw = {"query_string": {"token": token}}
    else:
        kw = {"headers": bearer(token)}
    response = client.open(path.format(id=file_id), method=method, **kw)
    assert response.status_code == status


# --- GET /files ----------------------------------------------------------------


def test_listing_of_a_new_user_is_empty(client, token):
    response = client.get("/files", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == {"items": [], "page": 1, "per_page": 50, "total": 0}


def test_listing_shows_only_the_callers_complete_files(app, client, auth, token):
    auth.create_user("bob")
    mine = {uploaded(client, token, b"a")["id"], uploaded(client, token, b"b")["id"]}
    uploaded(client, auth.token("bob"), b"bob's")
    insert_file(app, user_id(app), b"unfinished", complete=False)
    body = client.get("/files", headers=bearer(token)).get_json()
    assert {item["id"] for item in body["items"]} == mine
    assert body["total"] == 2


def test_listing_items_are_the_files_metadata(client, token):
    metadata = uploaded(
        client, token, b"listed", "listed.txt", after=[("description", "d")]
    )
    [item] = client.get("/files", headers=bearer(token)).get_json()["items"]
    assert set(item) == METADATA_FIELDS
    assert item == metadata


def test_listing_is_newest_first_with_ties_by_id_descending(app, client, token):
    owner = user_id(app)
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    oldest = insert_file(app, owner, created_at=t0 - timedelta(hours=1))
    middle = insert_file(app, owner, created_at=t0)
    tie_low = insert_file(app, owner, created_at=t0 + timedelta(hours=1))
    tie_high = insert_file(app, owner, created_at=t0 + timedelta(hours=1))
    items = client.get("/files", headers=bearer(token)).get_json()["items"]
    assert [item["id"] for item in items] == [tie_high, tie_low, middle, oldest]


@pytest.mark.parametrize(
    ("page", "expected"), [(1, slice(0, 2)), (2, slice(2, 4)), (3, slice(4, 5))]
)
def test_listing_is_paginated(app, client, token, page, expected):
    owner = user_id(app)
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    ids = [
        insert_file(app, owner, created_at=t0 + timedelta(minutes=i)) for i in range(5)
    ]
    newest_first = ids[::-1]
    response = client.get(f"/files?page={page}&per_page=2", headers=bearer(token))
    assert response.status_code == 200
    body = response.get_json()
    assert [item["id"] for item in body["items"]] == newest_first[expected]
    assert (body["page"], body["per_page"], body["total"]) == (page, 2, 5)


def test_page_past_the_end_is_empty_with_the_total(client, token):
    for content in (b"1", b"2", b"3"):
        uploaded(client, token, content)
    response = client.get("/files?page=3&per_page=2", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == {"items": [], "page": 3, "per_page": 2, "total": 3}


def test_per_page_of_200_is_accepted(client, token):
    uploaded(client, token)
    response = client.get("/files?per_page=200", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["per_page"] == 200


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("per_page=0", "per_page"),
        ("per_page=201", "per_page"),
        ("per_page=x", "per_page"),
    ],
)
def test_bad_paging_values_are_400_naming_the_parameter(client, token, query, name):
    response = client.get(f"/files?{query}", headers=bearer(token))
    assert response.status_code == 400
    body = response.get_json()
    assert set(body) == {"message"}
    # \b keeps "page" from matching inside "per_page".
    assert re.search(rf"\b{name}\b", body["message"]), body["message"]


def test_listing_reads_no_file_bytes(app, client, token):
    for size in (1, 5000):
        uploaded(client, token, random_bytes(size))
    with recorded_statements(app) as statements:
        response = client.get("/files", headers=bearer(token))
        assert response.status_code == 200
    assert any("stored_file" in statement for statement in statements)
    assert not [s for s in statements if "file_chunk" in s.lower()]


def test_a_listing_page_and_its_total_take_one_query(app, client, token):
    for number in range(3):
        uploaded(client, token, f"file {number}".encode())
    with recorded_statements(app) as statements:
        response = client.get("/files?per_page=2", headers=bearer(token))
        assert response.status_code == 200
    body = response.get_json()
    assert body["total"] == 3 and len(body["items"]) == 2
    # One for the token (its user, with the count of their finished files, and
    # the revocation list), one for the page, which counts only the account's
    # expired files (through the expiry index), never all of them.
    assert len(statements) == 2, statements
    assert "revoked_token" in statements[0] and "file_count" in statements[0]
    assert counts_only_expired(statements[1])


def counts_only_expired(statement: str) -> bool:
    """Whether every count in ``statement`` is of expired files alone."""
    pieces = statement.lower().split("count(")[1:]
    return all("expires_at <=" in piece.split(") as expired")[0] for piece in pieces)


def test_a_page_past_the_end_is_empty_and_counts_only_expired_files(app, client, token):
    uploaded(client, token, b"only one")
    with recorded_statements(app) as statements:
        response = client.get("/files?page=5", headers=bearer(token))
    body = response.get_json()
    assert (body["items"], body["total"], body["page"]) == ([], 1, 5)
    # The page, and (no row to carry it) the count of expired files alone.
    assert len(statements) == 3, statements
    assert counts_only_expired(statements[1])
    assert counts_only_expired(statements[2])


# --- GET /files/<id> -----------------------------------------------------------


def test_metadata_is_what_the_upload_answered(client, token):
    metadata = uploaded(client, token, b"meta", "m.pdf", content_type="application/pdf")
    response = client.get(f"/files/{metadata['id']}", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == metadata


def test_upload_location_points_at_the_metadata(client, token):
    response = multipart_upload(client, token)
    assert response.status_code == 201
    file_id = response.get_json()["id"]
    location = response.headers["Location"]
    assert urlsplit(location).path == f"/files/{file_id}"
    assert client.get(location, headers=bearer(token)).get_json()["id"] == file_id


def stored_count(app, owner) -> tuple[int, int]:
    """The account's kept count of finished files, and a count made now."""
    with app.app_context():
        kept = db.session.get(User, owner).file_count
        counted = db.session.execute(
            db.select(db.func.count())
            .select_from(StoredFile)
            .filter_by(owner_id=owner, complete=True)
        ).scalar_one()
        db.session.remove()
        return kept, counted


def test_the_total_follows_uploads_deletions_and_failed_uploads(app, client, token):
    owner = user_id(app)
    ids = [uploaded(client, token, bytes([n]) * 10)["id"] for n in range(3)]
    assert stored_count(app, owner) == (3, 3)
    # A refused upload (wrong digest) leaves no file and no count behind.
    refused = multipart_upload(client, token, b"abc", after=[("sha256", "0" * 64)])
    assert refused.status_code == 400
    assert client.delete(f"/files/{ids[0]}", headers=bearer(token)).status_code == 204
    assert stored_count(app, owner) == (2, 2)
    body = client.get("/files?per_page=1", headers=bearer(token)).get_json()
    assert (body["total"], len(body["items"])) == (2, 1)
    # Deleting the same file again changes nothing.
    assert client.delete(f"/files/{ids[0]}", headers=bearer(token)).status_code == 404
    assert stored_count(app, owner) == (2, 2)


# --- search and sort -------------------------------------------------------------


def names(client, token, query) -> tuple[list[str], int]:
    """The file names a listing with ``query`` gives, and its total."""
    answer = client.get(f"/files?{query}", headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    return [item["filename"] for item in body["items"]], body["total"]


def test_a_search_finds_names_holding_the_text_in_any_case(client, token):
    for name in ("Report-Q3.pdf", "photo.jpg", "old report.txt", "100%_done.txt"):
        uploaded(client, token, b"x", name)
    found, total = names(client, token, "q=REPORT")
    assert sorted(found) == ["Report-Q3.pdf", "old report.txt"] and total == 2
    # % and _ are matched as themselves, not as wildcards.
    assert names(client, token, "q=%25_")[0] == ["100%_done.txt"]
    assert names(client, token, "q=_")[0] == ["100%_done.txt"]
    assert names(client, token, "q=nothing-like-it") == ([], 0)
    # Without a search, the account's own count.
    assert names(client, token, "q=")[1] == 4


def test_files_sort_by_name_size_and_date_either_way(client, token):
    for name, size in (("b.txt", 30), ("A.txt", 10), ("c.txt", 20)):
        uploaded(client, token, b"x" * size, name)
    assert names(client, token, "sort=name")[0] == ["A.txt", "b.txt", "c.txt"]
    assert names(client, token, "sort=name&order=desc")[0] == [
        "c.txt",
        "b.txt",
        "A.txt",
    ]
    assert names(client, token, "sort=size")[0] == ["b.txt", "c.txt", "A.txt"]
    assert names(client, token, "sort=size&order=asc")[0] == ["A.txt", "c.txt", "b.txt"]
    assert names(client, token, "")[0] == ["c.txt", "A.txt", "b.txt"]
    assert names(client, token, "sort=date&order=asc")[0] == ["b.txt", "A.txt", "c.txt"]
    # Paged, searched and sorted at once.
    assert names(client, token, "q=.txt&sort=name&per_page=2&page=2") == (["c.txt"], 3)


@pytest.mark.one_database
@pytest.mark.parametrize(
    ("query", "named"),
    [("sort=colour", "sort"), ("order=up", "order"), (f"q={'x' * 256}", "q")],
)
def test_a_bad_search_or_order_is_a_400_naming_it(client, token, query, named):
    answer = client.get(f"/files?{query}", headers=bearer(token))
    assert answer.status_code == 400
    assert answer.get_json()["message"].startswith(named)


def test_the_page_searches_sorts_and_keeps_both_in_its_links(client, token):
    for number in range(3):
        uploaded(client, token, b"x", f"match-{number}.txt")
    uploaded(client, token, b"x", "other.bin")
    page = client.get(
        f"/?token={token}&q=match&sort=name&per_page=2", headers=HTML
    ).get_data(as_text=True)
    assert "3 files named like “match”" in page
    assert "match-0.txt" in page and "match-1.txt" in page
    assert "match-2.txt" not in page and "other.bin" not in page
    assert f'href="/?token={token}&amp;page=2&amp;q=match&amp;sort=name"' in page
    # Without JavaScript the search is a plain form that keeps the token.
    assert f'<input type="hidden" name="token" value="{token}">' in page
    assert '<option value="name" selected>' in page
