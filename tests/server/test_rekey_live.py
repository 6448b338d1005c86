"""`flask storage rekey` run against a live site: killed in the middle and
run again while a resumable upload rewrites its last chunk and downloads go
on, it leaves every chunk under the new key and every file intact."""

import base64
import hashlib
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import requests

from harness.server import ROOT, LiveServer
from helpers import (
    CHUNK,
    OFFSET_STREAM,
    SECRET_KEY,
    STORAGE_KEY,
    bearer,
    download_digest,
    new_upload,
    random_bytes,
    send_piece,
    tus_headers,
    uploaded,
)
from models import FileChunk, db

pytestmark = pytest.mark.slow

NEW_KEY = bytes(range(100, 132))
# The site before the roll: both keys, test-1 current (the test's own app).
BEFORE = {
    "CHUNK_SIZE": CHUNK,
    "STORAGE_KEYS": {"test-1": STORAGE_KEY, "test-2": NEW_KEY},
    "STORAGE_KEY_CURRENT": "test-1",
}
# The site after it: test-2 current (the server, and the rekey command).
AFTER_KEYS = (
    f"*test-2:{base64.b64encode(NEW_KEY).decode()},"
    f"test-1:{base64.b64encode(STORAGE_KEY).decode()}"
)
# Rekey's first run, slowed down (a chunk a transaction, a pause after each,
# a progress line after each) so that it is killed in the middle.
SLOW_REKEY = """
import sys, time
import storage_keys
storage_keys.CHUNKS_PER_TRANSACTION = 1
storage_keys.REPORT_SECONDS = 0
real = storage_keys._reseal_batch
def paced(keys, done):
    real(keys, done)
    time.sleep(0.003)
storage_keys._reseal_batch = paced
from flask.cli import main
sys.argv = ["flask", "--app", "app", "storage", "rekey"]
main()
"""
# Progress lines the first run prints before it is killed.
KILL_AFTER = 20
TUS_PIECE = 1500  # never a multiple of CHUNK: each piece rewrites the last chunk


def key_counts(app, file_ids=None) -> dict:
    with app.app_context():
        query = db.select(FileChunk.key_id, db.func.count()).group_by(FileChunk.key_id)
        if file_ids is not None:
            query = query.where(FileChunk.file_id.in_(file_ids))
        counts = dict(db.session.execute(query).all())
        db.session.remove()
    return counts


@pytest.mark.parametrize("app_settings", [BEFORE], ids=["before-the-roll"])
def test_rekey_killed_and_run_again_under_uploads_and_downloads(
    app, client, token, database_url
):
    # A resumable upload begun before the roll: its first pieces, and the
    # last chunk they fill part of, sealed under test-1.
    tus_content = random_bytes(120 * TUS_PIECE, seed=70)
    tus_path = new_upload(client, token, len(tus_content))
    offset = 0
    for _ in range(10):
        answer = send_piece(
            client, tus_path, offset, tus_content[offset : offset + TUS_PIECE]
        )
        assert answer.status_code == 204, answer.get_json()
        offset += TUS_PIECE
    files = {}
    for seed in range(4):
        content = random_bytes(128 * CHUNK + 123, seed=seed)
        file_id = uploaded(client, token, content, f"{seed}.bin")["id"]
        files[file_id] = hashlib.sha256(content).hexdigest()
    before = key_counts(app)
    assert before == {"test-1": 4 * 129 + 3 + 1}

    env = {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database_url,
        "STORAGE_KEYS": AFTER_KEYS,
        "CHUNK_SIZE": str(CHUNK),
    }
    command_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with LiveServer(env, threads=8) as server:
        stop = threading.Event()
        failures: list[str] = []
        downloads: list[int] = []
        tus_answer: list = []

        def download_again_and_again():
            while not stop.is_set():
                for file_id, sha256 in files.items():
                    try:
                        status, digest = download_digest(server.url, token, file_id)
                    except requests.RequestException as error:
                        failures.append(f"file {file_id}: {error!r}")
                        continue
                    if (status, digest) != (200, sha256):
                        failures.append(f"file {file_id}: {status} {digest}")
                    downloads.append(file_id)

        def upload_the_rest():
            try:
                tus_answer.append(send_the_rest())
            except requests.RequestException as error:
                tus_answer.append(repr(error))

        def send_the_rest():
            at = offset
            while at < len(tus_content):
                piece = tus_content[at : at + TUS_PIECE]
                answer = requests.patch(
                    server.url + tus_path,
                    data=piece,
                    headers=tus_headers(Upload_Offset=at, Content_Type=OFFSET_STREAM),
                    timeout=60,
                )
                if answer.status_code != 204:
                    return (answer.status_code, answer.text)
                at += len(piece)
                time.sleep(0.01)
            return int(answer.headers["Lockbox-File-Id"])

        readers = [threading.Thread(target=download_again_and_again) for _ in range(2)]
        uploader = threading.Thread(target=upload_the_rest)
        for reader in readers:
            reader.start()
        try:
            first = subprocess.Popen(
                [sys.executable, "-c", SLOW_REKEY],
                cwd=ROOT,
                env=command_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            watchdog = threading.Timer(120, first.kill)
            watchdog.start()
            lines = []
            try:
                for line in first.stdout:
                    lines.append(line)
                    if len(lines) == 1:
                        uploader.start()
                    if len(lines) == 1 + KILL_AFTER:
                        first.kill()  # as a crash or a deploy would stop it
                        break
            finally:
                watchdog.cancel()
                first.wait(timeout=30)
                first.stdout.close()
            assert first.returncode == -9, "".join(lines)
            # The upload was going on around the killed run.
            assert uploader.is_alive()
            assert (
                lines[0]
                == f"{sum(before.values())} chunks to re-seal under key 'test-2'\n"
            )
            # (A chunk the upload rewrote meanwhile is not counted.)
            assert re.fullmatch(
                rf"  \d+ of {sum(before.values())} chunks re-sealed \(\d %\)\n",
                lines[KILL_AFTER],
            ), lines
            # Killed in the middle: part of the old files moved, not all.
            midway = key_counts(app, list(files))
            assert midway.get("test-1", 0) > 0, midway
            assert midway.get("test-2", 0) > 0, midway

            second = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "app", "storage", "rekey"],
                cwd=ROOT,
                env=command_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert second.returncode == 0, second.stdout + second.stderr
            assert "Every chunk is sealed under key 'test-2'" in second.stdout
            assert "Key 'test-1' seals nothing:" in second.stdout
            uploader.join(timeout=120)
        finally:
            stop.set()
            for reader in readers:
                reader.join(timeout=120)
            if uploader.is_alive():
                uploader.join(timeout=120)
        assert failures == []
        assert len(downloads) >= len(files)
        [tus_file_id] = tus_answer
        assert isinstance(tus_file_id, int), tus_file_id
        files[tus_file_id] = hashlib.sha256(tus_content).hexdigest()
        # Written after the rekey, or by the server: all under test-2.
        chunks = -(-len(tus_content) // CHUNK) + 4 * 129
        assert key_counts(app) == {"test-2": chunks}
        for file_id, sha256 in files.items():
            assert download_digest(server.url, token, file_id) == (200, sha256)
        answer = requests.get(
            f"{server.url}/files/{tus_file_id}", headers=bearer(token), timeout=30
        )
        assert answer.json()["sha256"] == files[tus_file_id]
