"""The README's curl walk-through, run as written against a real server: its
shell blocks (sign in, upload, list, download, resume, delete; share a file;
an API token), taken from README.md itself, so that the next drift between
the README and the app fails here."""

import os
import re
import subprocess
import zipfile

import pytest
import requests

from harness.server import ROOT
from helpers import bearer, random_bytes, sign_in

pytestmark = pytest.mark.one_database

# What the README writes, and what stands for it here.
README_URL = "http://127.0.0.1:5000"
README_USER, README_PASSWORD = "admin", "3vH2k9Xq0cWb7YtL"
# The sections run, in order, and how many of each one's shell blocks (the
# token section's second block is the server's command line).
SECTIONS = {
    "## Walk-through with curl": 2,
    "## Share a file": 1,
    "## API tokens for scripts": 1,
    "## Ask someone for files": 1,
    "## Share several files": 1,
}


def shell_blocks(readme: str, heading: str) -> list[str]:
    """The ```sh blocks of one section of the README, in order."""
    start = readme.index(f"\n{heading}\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end != -1 else len(readme)]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def walk_through() -> str:
    """The README's blocks as one script that stops at the first failure."""
    readme = (ROOT / "README.md").read_text()
    blocks = []
    for heading, count in SECTIONS.items():
        found = shell_blocks(readme, heading)
        assert len(found) >= count, heading
        blocks += found[:count]
    return "set -euo pipefail\n" + "\n".join(blocks)


def test_the_readme_walk_through_runs_as_written(server, auth, tmp_path):
    auth.create_user(README_USER, README_PASSWORD)
    report = random_bytes(300_000, seed=41)
    (tmp_path / "report.pdf").write_bytes(report)
    (tmp_path / "photo.jpg").write_bytes(random_bytes(20_000, seed=42))
    script = walk_through().replace(README_URL, server.url)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout
    for answer in (
        '{"message":"Token missing"}',
        '{"message":"Invalid token"}',
        "file report.pdf uploaded successfully",
        '"has_password":true',
        '{"message":"This link was revoked by its owner"}',
        '{"message":"Token lacks the shares:write scope"}',
        '{"message":"file report.pdf sent to admin"}',
        '{"message":"This upload request was closed by its owner"}',
    ):
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
