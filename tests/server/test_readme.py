"""The README's curl walk-through, run as written against a real server: its
shell blocks (sign in, upload, list, download, resume, delete; share a file;
an API token), taken from README.md itself, so that the next drift between
the README and the app fails here."""

import zipfile

import pytest
import requests

from helpers import (
    README_ANSWERS,
    README_PASSWORD,
    README_USER,
    bearer,
    random_bytes,
    run_readme_walk_through,
    sign_in,
)

pytestmark = pytest.mark.one_database


def test_the_readme_walk_through_runs_as_written(server, auth, tmp_path):
    auth.create_user(README_USER, README_PASSWORD)
    report = random_bytes(300_000, seed=41)
    (tmp_path / "report.pdf").write_bytes(report)
    (tmp_path / "photo.jpg").write_bytes(random_bytes(20_000, seed=42))
    output = run_readme_walk_through(server.url, README_PASSWORD, tmp_path)
    for answer in README_ANSWERS:
        assert answer in output, output
    # The download, its resumption and the share link's download all gave
    # back the bytes sent.
    assert (tmp_path / "downloads" / "report.pdf").read_bytes() == report
    assert (tmp_path / "shared.pdf").read_bytes() == report
    # The photo was deleted; the report is there three times (the API token
    # sent it again, and so did the upload request's guest), and the token
    # that did it is revoked.
    token = sign_in(server, README_USER, README_PASSWORD)["token"]
    files = requests.get(server.url + "/files", headers=bearer(token), timeout=30)
    assert [item["filename"] for item in files.json()["items"]] == ["report.pdf"] * 3
    tokens = requests.get(server.url + "/tokens", headers=bearer(token), timeout=30)
    assert tokens.json() == {"items": []}
    # The link to all three gave them back as one zip, each under a name of
    # its own, and counted two downloads: the zip, and the file alone.
    with zipfile.ZipFile(tmp_path / "all.zip") as archive:
        assert archive.namelist() == ["report.pdf", "report (2).pdf", "report (3).pdf"]
        assert {archive.read(name) for name in archive.namelist()} == {report}
    assert (tmp_path / "first.pdf").read_bytes() == report
    links = requests.get(server.url + "/shares", headers=bearer(token), timeout=30)
    assert [link["downloads"] for link in links.json()["items"]] == [2]
