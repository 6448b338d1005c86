"""Links to several files: made by the owner from some of their files, opened
by anyone with the link, each file alone or all as one streamed zip, counted
once whatever they fetch, and ended when their last file is gone."""

import base64
import hashlib
import io
import zipfile

import pytest

import storage
from downloads import zip_names
from helpers import HTML, AuthActions, bearer, make_app, random_bytes, uploaded
from models import FileChunk, ShareFile, StoredFile, db

PASSWORD = "open sesame 42"


@pytest.fixture
def files(client, token) -> list[tuple[int, str, bytes]]:
    """Alice's files: two named alike, a picture, an empty one, and one over
    a chunk; (id, name, content) each."""
    made = []
    for seed, (name, size) in enumerate(
        [("notes.txt", 3000), ("Notes.txt", 10), ("pic.png", 800), ("empty.bin", 0)]
        + [("notes.txt", 70_000)]
    ):
        content = random_bytes(size, seed=seed + 40)
        made.append((uploaded(client, token, content, name)["id"], name, content))
    return made


def make_link(client, token, file_ids, **settings) -> dict:
    """POST /shares that must succeed; the answer's JSON."""
    answer = client.post(
        "/shares", json={"file_ids": file_ids, **settings}, headers=bearer(token)
    )
    assert answer.status_code == 201, answer.get_json()
    assert answer.headers["Location"] == "/shares"
    return answer.get_json()


def path_of(link: dict) -> str:
    """The link's path (the client talks to the app directly)."""
    return link["url"].removeprefix("http://localhost")


def unzipped(body: bytes) -> dict[str, str]:
    """A zip's members: name to SHA-256, every CRC checked on the way."""
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        return {
            info.filename: hashlib.sha256(archive.read(info)).hexdigest()
            for info in archive.infolist()
        }


def test_a_link_to_several_files_lists_them_in_the_order_picked(client, token, files):
    ids = [file_id for file_id, _, _ in files]
    link = make_link(client, token, [ids[2], ids[0], ids[2], ids[1]])
    assert link["file_id"] is None and link["file_ids"] == [ids[2], ids[0], ids[1]]
    assert link["status"] == "active" and link["downloads"] == 0
    listed = client.get("/shares", headers=bearer(token)).get_json()["items"]
    assert [item["id"] for item in listed] == [link["id"]]
    opened = client.get(path_of(link)).get_json()
    assert opened["owner"] == "alice" and opened["downloads_left"] is None
    assert opened["download_url"] == link["url"] + "/download"
    assert [(item["position"], item["filename"]) for item in opened["files"]] == [
        (1, "pic.png"),
        (2, "notes.txt"),
        (3, "Notes.txt"),
    ]
    assert opened["files"][1]["sha256"] == hashlib.sha256(files[0][2]).hexdigest()
    assert opened["files"][1]["download_url"] == link["url"] + "/files/2"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "file_ids: file_ids is required"),
        ({"file_ids": []}, 400, "file_ids: file_ids must list 1 to 500 files"),
        ({"file_ids": "1"}, 400, "file_ids: file_ids must be a list of file ids"),
        ({"file_ids": ["x"]}, 400, "file_ids: file ids are whole numbers"),
        ({"file_ids": [1] * 501}, 400, "file_ids: file_ids must list 1 to 500 files"),
        ({"file_ids": [99999]}, 404, "File not found"),
        ({"file_ids": [2**40]}, 404, "File not found"),
        (
            {"file_ids": [1], "expires_in": 5},
            400,
            "expires_in: expires_in must be at least 60",
        ),
    ],
)
def test_a_link_to_several_files_refuses_what_it_cannot_make(
    client, token, files, body, status, message
):
    answer = client.post("/shares", json=body, headers=bearer(token))
    assert answer.status_code == status
    assert answer.get_json() == {"message": message}


def test_someone_elses_file_is_not_found_and_makes_no_link(client, auth, files):
    auth.create_user("bob")
    bob = auth.token("bob")
    own = uploaded(client, bob, b"bob's", "bob.txt")["id"]
    answer = client.post(
        "/shares", json={"file_ids": [own, files[0][0]]}, headers=bearer(bob)
    )
    assert answer.status_code == 404
    assert answer.get_json() == {"message": "File not found"}
    assert client.get("/shares", headers=bearer(bob)).get_json()["items"] == []


def test_making_one_needs_read_access_to_the_files_too(client, token, files):
    made = client.post(
        "/tokens",
        json={"name": "links", "scopes": ["shares:write"]},
        headers=bearer(token),
    ).get_json()["token"]
    answer = client.post(
        "/shares", json={"file_ids": [files[0][0]]}, headers=bearer(made)
    )
    assert answer.status_code == 403
    assert answer.get_json() == {"message": "Token lacks the files:read scope"}


def test_the_zip_holds_every_file_byte_for_byte_under_names_that_never_clash(
    client, token, files
):
    link = make_link(client, token, [file_id for file_id, _, _ in files])
    answer = client.get(path_of(link) + "/download")
    assert answer.status_code == 200
    assert answer.content_type == "application/zip"
    assert answer.content_length == len(answer.data)
    assert answer.headers["Content-Disposition"].startswith(
        'attachment; filename="lockbox-'
    )
    assert "Accept-Ranges" not in answer.headers
    assert unzipped(answer.data) == {
        "notes.txt": hashlib.sha256(files[0][2]).hexdigest(),
        "Notes (2).txt": hashlib.sha256(files[1][2]).hexdigest(),
        "pic.png": hashlib.sha256(files[2][2]).hexdigest(),
        "empty.bin": hashlib.sha256(b"").hexdigest(),
        "notes (3).txt": hashlib.sha256(files[4][2]).hexdigest(),
    }
    # Stored, not compressed: what its length was said to be before it began.
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        assert {info.compress_type for info in archive.infolist()} == {
            zipfile.ZIP_STORED
        }


def test_names_windows_refuses_or_too_long_are_made_safe():
    long = "é" * 127 + ".txt"  # 258 bytes
    names = zip_names(['a<b>:"c|?*\\.txt', long, long])
    assert names[0] == "a_b___c____.txt"
    assert [len(name.encode()) <= 255 for name in names[1:]] == [True, True]
    assert names[2].endswith(" (2).txt") and names[1] != names[2]


def test_names_that_repeat_get_a_number_before_their_extension():
    assert zip_names(["a.txt", "A.txt", "a.txt", "a (2).txt", "b", "b", ".env"]) == [
        "a.txt",
        "A (2).txt",
        "a (3).txt",
        "a (2) (2).txt",
        "b",
        "b (2)",
        ".env",
    ]


def test_the_zips_etag_follows_its_files_and_a_match_is_a_304_that_counts_nothing(
    app, client, token, files
):
    ids = [file_id for file_id, _, _ in files]
    link = make_link(client, token, ids[:3], max_downloads=1)
    path = path_of(link) + "/download"
    head = client.head(path)
    assert head.status_code == 200 and head.data == b""
    etag = head.headers["ETag"]
    assert etag.startswith('W/"')
    same = client.get(path, headers={"If-None-Match": etag})
    assert same.status_code == 304
    assert client.get(path_of(link)).get_json()["downloads_left"] == 1
    # Another file in the link (here: one less) is another zip.
    client.delete(f"/files/{ids[1]}", headers=bearer(token))
    assert client.head(path).headers["ETag"] != etag


def test_one_claim_covers_the_zip_and_every_file_of_the_link(client, app, token, files):
    ids = [file_id for file_id, _, _ in files]
    link = make_link(client, token, ids[:3], max_downloads=1)
    path = path_of(link)
    first = client.get(path + "/files/2")
    assert first.status_code == 200 and first.data == files[1][2]
    assert first.headers["Content-Location"].startswith(path + "/files/2?claim=")
    # The same visitor (its claim cookie) takes the zip and another file,
    # uncounted; a stranger finds the link used up.
    assert client.get(path + "/download").status_code == 200
    assert client.get(path + "/files/1").data == files[0][2]
    stranger = app.test_client()
    gone = stranger.get(path + "/download")
    assert gone.status_code == 410
    assert gone.get_json() == {"message": "This link has reached its download limit"}
    assert stranger.get(path + "/files/3").status_code == 410
    # A client without cookies resumes with the claim in the URL it was given.
    claim_url = first.headers["Content-Location"]
    resumed = stranger.get(claim_url, headers={"Range": "bytes=5-"})
    assert resumed.status_code == 206 and resumed.data == files[1][2][5:]
    listed = client.get("/shares", headers=bearer(token)).get_json()["items"][0]
    assert listed["downloads"] == 1 and listed["status"] == "used_up"


def test_a_file_alone_keeps_range_and_previews_of_a_single_file(client, token, files):
    link = make_link(client, token, [files[2][0], files[0][0]])
    path = path_of(link)
    part = client.get(path + "/files/2", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == files[0][2][100:200]
    shown = client.get(path + "/files/1?inline=1")
    assert shown.status_code == 200
    assert shown.headers["Content-Disposition"].startswith("inline")
    missing = client.get(path + "/files/3")
    assert missing.status_code == 404
    assert missing.get_json() == {"message": "This link has no such file"}


def test_a_link_to_one_file_has_it_at_position_one(client, token, files):
    answer = client.post(
        f"/files/{files[0][0]}/shares", json={}, headers=bearer(token)
    ).get_json()
    assert answer["file_ids"] == [files[0][0]]
    path = path_of(answer)
    assert client.get(path + "/files/1").data == files[0][2]
    assert client.get(path + "/files/2").status_code == 404


def test_a_password_guards_the_zip_and_each_file(client, token, files):
    link = make_link(client, token, [files[0][0], files[2][0]], password=PASSWORD)
    path = path_of(link)
    for target in ("", "/download", "/files/1"):
        answer = client.get(path + target)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="Share"'
    credentials = base64.b64encode(f":{PASSWORD}".encode()).decode()
    answer = client.get(
        path + "/download", headers={"Authorization": f"Basic {credentials}"}
    )
    assert answer.status_code == 200
    assert set(unzipped(answer.data)) == {"notes.txt", "pic.png"}


def test_deleting_a_file_takes_it_out_and_the_last_one_ends_the_link(
    app, client, token, files
):
    ids = [file_id for file_id, _, _ in files]
    link = make_link(client, token, [ids[0], ids[2]])
    path = path_of(link)
    assert client.delete(f"/files/{ids[0]}", headers=bearer(token)).status_code == 204
    opened = client.get(path).get_json()
    # What is left keeps its place (and its address).
    assert [(item["position"], item["filename"]) for item in opened["files"]] == [
        (2, "pic.png")
    ]
    assert set(unzipped(client.get(path + "/download").data)) == {"pic.png"}
    assert client.get(path + "/files/1").status_code == 404
    assert client.delete(f"/files/{ids[2]}", headers=bearer(token)).status_code == 204
    for target in ("", "/download", "/files/2"):
        answer = client.get(path + target)
        assert answer.status_code == 410
        assert answer.get_json() == {
            "message": "The files of this link were deleted by their owner, or expired"
        }
    listed = client.get("/shares", headers=bearer(token)).get_json()["items"][0]
    assert listed["status"] == "emptied" and listed["file_ids"] == []
    with app.app_context():
        assert db.session.execute(db.select(ShareFile)).all() == []


def test_revoking_a_link_to_several_files_ends_it(client, token, files):
    link = make_link(client, token, [files[0][0], files[1][0]])
    assert (
        client.delete(f"/shares/{link['id']}", headers=bearer(token)).status_code == 204
    )
    answer = client.get(path_of(link) + "/download")
    assert answer.status_code == 410
    assert answer.get_json() == {"message": "This link was revoked by its owner"}


def test_the_access_log_says_what_was_fetched(client, token, files):
    link = make_link(client, token, [files[0][0], files[2][0]])
    path = path_of(link)
    # The server closes each answer once it has gone out: then the row is
    # written.
    whole = client.get(path + "/download")
    zipped = whole.data
    whole.close()
    client.get(path + "/files/2").close()
    rows = client.get(
        f"/shares/{link['id']}/accesses", headers=bearer(token)
    ).get_json()["items"]
    assert [
        (row["action"], row["what"], row["bytes"], row["completed"]) for row in rows
    ] == [
        ("resume", "pic.png", 800, True),
        ("download", "all 2 files as a zip", len(zipped), True),
    ]
    page = client.get("/shares", headers={**HTML, **bearer(token)})
    assert "all 2 files as a zip" in page.get_data(as_text=True)


def test_the_owners_page_makes_a_link_of_the_picked_files(client, token, files):
    ids = [file_id for file_id, _, _ in files]
    listing = client.get("/", headers={**HTML, **bearer(token)})
    assert b'form="pick-files"' in listing.data and b'id="share-picked"' in listing.data
    page = client.get(
        f"/shares?file_ids={ids[2]}&file_ids={ids[0]}&file_ids=99999&file_ids={ids[2]}",
        headers={**HTML, **bearer(token)},
    )
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Create one link to 2 files" in text
    # In the order picked.
    assert text.index(f'name="file_ids" value="{ids[2]}"') < text.index(
        f'name="file_ids" value="{ids[0]}"'
    )
    made = client.post(
        "/shares",
        data={"file_ids": [str(ids[0]), str(ids[2])], "expires_in": "", "password": ""},
        headers={**HTML, **bearer(token)},
    )
    assert made.status_code == 303 and made.headers["Location"].startswith("/shares")
    page = client.get("/shares", headers={**HTML, **bearer(token)}).get_data(
        as_text=True
    )
    assert "Link created: http://localhost/s/" in page
    assert "notes.txt, pic.png" in page
    assert "tick the files" in page


def test_the_visitors_page_lists_the_files_and_shows_the_one_asked_for(
    client, token, files
):
    link = make_link(client, token, [files[3][0], files[2][0]])
    path = path_of(link)
    page = client.get(path, headers=HTML).get_data(as_text=True)
    assert "2 files" in page and "Download all as a zip" in page
    assert f'href="{path}/download"' in page
    assert f'href="{path}/files/1"' in page
    # Only the picture has a preview, shown when asked.
    assert page.count(">Preview<") == 1 and "preview-media" not in page
    shown = client.get(path + "?file=2", headers=HTML).get_data(as_text=True)
    assert f'src="{path}/files/2?inline=1"' in shown


def insert_generated(app, owner_id, name, size, block) -> str:
    """A finished file of ``size`` bytes, ``block`` over and over, written
    straight into chunk rows of the block's size; its SHA-256."""
    digest = hashlib.sha256()
    with app.app_context():
        stored_file = StoredFile(
            owner_id=owner_id,
            filename=name,
            size=size,
            sha256="",
            chunk_size=len(block),
            complete=True,
        )
        db.session.add(stored_file)
        db.session.flush()
        for seq, start in enumerate(range(0, size, len(block))):
            data = block[: size - start]
            digest.update(data)
            db.session.add(FileChunk(file_id=stored_file.id, seq=seq, data=data))
            if seq % 64 == 63:
                db.session.flush()
                db.session.expunge_all()
                stored_file = db.session.merge(stored_file)
        stored_file.sha256 = digest.hexdigest()
        storage.recount_files(owner_id)
        db.session.commit()
        return stored_file.sha256


@pytest.mark.slow
def test_a_zip_past_4_gib_is_zip64_and_every_member_checks_out(tmp_path):
    """A member over 4 GiB, and one that starts past 4 GiB: both need ZIP64
    (sizes, and the offset in the central directory). Generated data, SQLite
    only: the zip is made the same way whatever the database."""
    app = make_app(f"sqlite:///{tmp_path / 'zip64.db'}")
    client = app.test_client()
    auth = AuthActions(app, client)
    owner = auth.create_user("alice")
    token = auth.token("alice")
    block = random_bytes(8 * 2**20, seed=64)
    big_size = 2**32 + 3 * 2**20 + 5
    expected = {
        "big.bin": insert_generated(app, owner, "big.bin", big_size, block),
        "after.bin": insert_generated(app, owner, "after.bin", 2**20 + 1, block[1:]),
    }
    with app.app_context():
        ids = list(db.session.execute(db.select(StoredFile.id)).scalars())
    link = make_link(client, token, ids)
    answer = client.get(path_of(link) + "/download", buffered=False)
    assert answer.status_code == 200
    saved = tmp_path / "all.zip"
    with saved.open("wb") as out:
        for piece in answer.response:
            out.write(piece)
    answer.close()
    assert saved.stat().st_size == answer.content_length > big_size
    got = {}
    with zipfile.ZipFile(saved) as archive:
        big, after = archive.infolist()
        assert big.file_size == big_size and after.header_offset > 2**32
        for info in (big, after):
            digest = hashlib.sha256()
            # zipfile checks each member's CRC-32 as it reaches its end.
            with archive.open(info) as member:
                while piece := member.read(2**20):
                    digest.update(piece)
            got[info.filename] = digest.hexdigest()
    assert got == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("file_ids=x", "file_ids: file ids are whole numbers"),
        (
            "&".join(["file_ids=1"] * 201),
            "file_ids: file_ids may list at most 200 files",
        ),
    ],
)
def test_the_pages_picks_must_be_file_ids(client, token, query, message):
    answer = client.get(f"/shares?{query}", headers=bearer(token))
    assert answer.status_code == 400
    assert answer.get_json() == {"message": message}
