"""Lockbox on a three-node Galera cluster behind nginx (harness/topology.py,
what scripts/cluster starts), proven with faults: reads across nodes, writes
that conflict across nodes, a node killed and rejoining, an app instance
killed, a 1 GiB upload, slow clients, health and metrics.

Skipped only where Galera is missing, and never in CI.
"""

import hashlib
import re
import threading
import time

import MySQLdb
import pytest
import requests

from helpers import (
    PASSWORD,
    bearer,
    download_digest,
    post_file,
    random_bytes,
    sign_in,
    slow_clients,
    time_to_sign_in,
)

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
VISIBILITY_FILE = bytes(range(256)) * (4 * MIB // 256)


def test_every_node_is_synced_and_healthz_says_so(cluster):
    assert cluster.galera.size() == 3
    for app in cluster.apps:
        health = requests.get(app.url + "/healthz", timeout=10)
        assert health.status_code == 200
        assert health.json() == {
            "status": "ok",
            "database": "ok",
            "cluster": "Primary, Synced",
        }


def test_an_acknowledged_upload_is_visible_at_once_through_the_other_node(cluster):
    first, second = cluster.apps
    token = sign_in(first)["token"]
    misses = []
    for number in range(200):
        writer, reader = (first, second) if number % 2 else (second, first)
        # 4 MiB: chunk rows the other node applies before the file's last
        # commit, so that a read there would come early without causal reads.
        answer = post_file(writer.url, token, VISIBILITY_FILE + f"{number}".encode())
        assert answer.status_code == 201, answer.text
        file_id = answer.json()["id"]
        seen = requests.get(f"{reader.url}/files/{file_id}", headers=bearer(token))
        if seen.status_code != 200:
            misses.append((number, seen.status_code))
    assert misses == []
    listed = requests.get(
        second.url + "/files", params={"per_page": 200}, headers=bearer(token)
    ).json()
    assert listed["total"] >= 200


def test_without_causal_reads_the_same_reads_would_come_early(cluster):
    # What the test above would find if the app did not ask for causal reads:
    # the same read, on the other node, on a connection with wsrep_sync_wait
    # 0 (Galera's default).
    first, _ = cluster.apps
    token = sign_in(first)["token"]
    other = cluster.galera.nodes[1]
    connection = MySQLdb.connect(
        host="127.0.0.1", port=other.port, user="root", database="lockbox"
    )
    early = 0
    try:
        cursor = connection.cursor()
        cursor.execute("SET SESSION wsrep_sync_wait = 0")
        for number in range(20):
            answer = post_file(first.url, token, VISIBILITY_FILE + bytes([number]))
            cursor.execute(
                "SELECT complete FROM stored_file WHERE id = %s",
                (answer.json()["id"],),
            )
            row = cursor.fetchone()
            connection.commit()
            early += row is None or not row[0]
    finally:
        connection.close()
    assert early > 0


def test_a_sign_out_is_refused_at_once_through_the_other_node(cluster):
    first, second = cluster.apps
    for _ in range(50):
        token = sign_in(first)["token"]
        assert (
            requests.post(first.url + "/logout", headers=bearer(token)).status_code
            == 204
        )
        after = requests.get(second.url + "/files", headers=bearer(token))
        assert after.status_code == 401, after.text
        assert after.json() == {"message": "Token revoked"}


def test_a_revoked_share_link_stops_at_once_through_the_other_node(cluster):
    first, second = cluster.apps
    token = sign_in(first)["token"]
    file_id = post_file(first.url, token, b"shared").json()["id"]
    for _ in range(20):
        share = requests.post(
            f"{first.url}/files/{file_id}/shares", json={}, headers=bearer(token)
        ).json()
        link = share["url"].split("/s/", 1)[1]
        assert (
            requests.delete(
                f"{first.url}/shares/{share['id']}", headers=bearer(token)
            ).status_code
            == 204
        )
        assert requests.get(f"{second.url}/s/{link}/download").status_code == 410


def test_concurrent_refreshes_through_two_nodes_let_exactly_one_through(cluster):
    first, second = cluster.apps
    for _ in range(5):
        refresh_token = sign_in(first)["refresh_token"]
        start = threading.Barrier(6)
        statuses = []

        def refresh(url, start=start, refresh_token=refresh_token, statuses=statuses):
            start.wait()
            answer = requests.post(url + "/refresh", headers=bearer(refresh_token))
            statuses.append(answer.status_code)

        threads = [
            threading.Thread(target=refresh, args=(app.url,))
            for app in cluster.apps
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200, 401, 401, 401, 401, 401], statuses


def test_signing_out_everywhere_while_uploading_through_the_other_node(cluster):
    first, second = cluster.apps
    statuses = []
    for _ in range(10):
        token = sign_in(first)["token"]
        other = sign_in(first)["token"]
        start = threading.Barrier(2)

        def send(token=token, start=start):
            start.wait()
            statuses.append(
                post_file(second.url, token, random_bytes(3 * MIB)).status_code
            )

        thread = threading.Thread(target=send)
        thread.start()
        start.wait()
        everywhere = requests.post(
            first.url + "/logout?everywhere=1", headers=bearer(other)
        )
        thread.join()
        assert everywhere.status_code == 204
    # Each upload either got in before the sign-out or was refused by it: as
    # on one server, never a 5xx.
    assert set(statuses) <= {201, 401}, statuses


def test_a_quota_holds_for_uploads_begun_together_through_two_nodes(cluster):
    """Row locks stay on their node: two reservations through two nodes are
    ordered by both writing the owner's row, which certification lets only
    one of commit; the other's retry sees the quota."""
    cluster.flask("users", "create", "quinn", stdin=PASSWORD + "\n")
    cluster.flask("users", "set-quota", "quinn", str(4 * MIB))
    token = sign_in(cluster.apps[0], "quinn")["token"]
    for _ in range(8):
        start = threading.Barrier(2)
        answers = []

        def begin(url, start=start, answers=answers):
            start.wait()
            answers.append(
                requests.post(
                    url + "/uploads",
                    headers={
                        "Tus-Resumable": "1.0.0",
                        "Upload-Length": str(3 * 1000 * 1000),
                        **bearer(token),
                    },
                    timeout=60,
                )
            )

        threads = [
            threading.Thread(target=begin, args=(app.url,)) for app in cluster.apps
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(a.status_code for a in answers) == [201, 413], [
            a.text for a in answers
        ]
        for answer in answers:
            if answer.status_code == 201:
                ended = requests.delete(
                    answer.headers["Location"],
                    headers={"Tus-Resumable": "1.0.0"},
                    timeout=60,
                )
                assert ended.status_code == 204


def test_an_upload_requests_cap_holds_for_guests_through_two_nodes(cluster):
    """Two guests send the one file a request takes, each through a node of
    its own: exactly one gets it, whatever node certifies first."""
    cluster.flask("users", "create", "rhea", stdin=PASSWORD + "\n")
    token = sign_in(cluster.apps[0], "rhea")["token"]
    for _ in range(6):
        made = requests.post(
            cluster.apps[0].url + "/requests",
            json={"title": "One file", "max_files": 1},
            headers=bearer(token),
            timeout=60,
        )
        assert made.status_code == 201, made.text
        path = "/r/" + made.json()["url"].split("/r/", 1)[1]
        start = threading.Barrier(2)
        answers = []

        def send(url, start=start, answers=answers, path=path):
            start.wait()
            answers.append(
                requests.post(
                    url + path + "/uploads",
                    headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1000"},
                    timeout=60,
                )
            )

        threads = [
            threading.Thread(target=send, args=(app.url,)) for app in cluster.apps
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(a.status_code for a in answers) == [201, 410], [
            a.text for a in answers
        ]


def test_deleting_a_file_while_the_other_node_sends_it(cluster):
    first, second = cluster.apps
    token = sign_in(first)["token"]
    content = random_bytes(40 * MIB, seed=3)
    file_id = post_file(first.url, token, content).json()["id"]
    expected = hashlib.sha256(content).hexdigest()
    with requests.get(
        f"{second.url}/files/{file_id}/download",
        headers=bearer(token),
        stream=True,
        timeout=120,
    ) as answer:
        pieces = answer.iter_content(MIB)
        digest = hashlib.sha256(next(pieces))
        deleted = requests.delete(f"{first.url}/files/{file_id}", headers=bearer(token))
        assert deleted.status_code == 204
        for piece in pieces:
            digest.update(piece)
    # The download begun before the delete is whole; afterwards the file is gone.
    assert answer.status_code == 200 and digest.hexdigest() == expected
    for app in cluster.apps:
        gone = requests.get(f"{app.url}/files/{file_id}", headers=bearer(token))
        assert gone.status_code == 404


def test_deleting_while_the_other_node_uploads_is_retried_not_refused(cluster):
    """A delete and an upload of the same account through two nodes both
    write the account's row; certification refuses one, which is run again
    rather than answered 503."""
    first, second = cluster.apps
    token = sign_in(first)["token"]
    deletes, uploads = [], []
    # Each round makes a conflict likely (both write the account's row at
    # once); a dozen rounds see several, and each round costs seconds.
    for number in range(12):
        file_id = post_file(first.url, token, b"to go %d" % number).json()["id"]
        start = threading.Barrier(2)

        def send(number=number, start=start):
            start.wait()
            uploads.append(post_file(second.url, token, b"new %d" % number).status_code)

        thread = threading.Thread(target=send)
        thread.start()
        start.wait()
        deletes.append(
            requests.delete(
                f"{first.url}/files/{file_id}", headers=bearer(token), timeout=60
            ).status_code
        )
        thread.join()
    assert set(deletes) == {204}, deletes
    assert set(uploads) == {201}, uploads


def test_a_node_cut_off_from_the_cluster_answers_503_and_never_500(cluster):
    """A node outside the primary component refuses every statement on a
    table (1047), its rollbacks too: its instance answers 503, so nginx
    tries the next one, and /healthz says why."""
    first, _ = cluster.apps
    node = cluster.galera.nodes[0]  # the first instance's
    token = sign_in(first)["token"]
    refresh_token = sign_in(first)["refresh_token"]
    file_id = post_file(first.url, token, b"kept").json()["id"]
    node.set_isolated(True)
    try:
        deadline = time.monotonic() + 30
        while node.status("wsrep_cluster_status") != "non-Primary":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        answers = {
            "upload": post_file(first.url, token, b"refused"),
            "list": requests.get(first.url + "/files", headers=bearer(token)),
            "file": requests.get(f"{first.url}/files/{file_id}", headers=bearer(token)),
            "download": requests.get(
                f"{first.url}/files/{file_id}/download", headers=bearer(token)
            ),
            "delete": requests.delete(
                f"{first.url}/files/{file_id}", headers=bearer(token)
            ),
            "sign-in": requests.get(first.url + "/login", auth=("alice", PASSWORD)),
            "refresh": requests.post(
                first.url + "/refresh", headers=bearer(refresh_token)
            ),
            "tus": requests.post(
                first.url + "/uploads",
                headers=bearer(
                    token, **{"Tus-Resumable": "1.0.0", "Upload-Length": "5"}
                ),
            ),
        }
        statuses = {name: answer.status_code for name, answer in answers.items()}
        assert set(statuses.values()) == {503}, statuses
        for answer in answers.values():
            assert answer.json()["message"], answer.text
        health = requests.get(first.url + "/healthz", timeout=10)
        assert health.status_code == 503
        assert health.json()["cluster"].startswith("non-Primary"), health.text
    finally:
        node.set_isolated(False)
    node.wait_synced(timeout=120)
    deadline = time.monotonic() + 30
    while (
        requests.get(f"{first.url}/files/{file_id}", headers=bearer(token)).status_code
        != 200
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert requests.get(first.url + "/healthz", timeout=10).status_code == 200


def test_a_one_gib_upload_through_nginx_with_default_galera_limits(cluster):
    token = sign_in(cluster.nginx)["token"]
    size = 1024 * MIB
    block = random_bytes(MIB, seed=11)
    digest = hashlib.sha256()

    def body():
        for number in range(size // MIB):
            piece = block[number % 7 :] + block[: number % 7]
            digest.update(piece)
            yield piece

    answer = requests.post(
        cluster.nginx.url + "/uploads",
        data=body(),
        headers=bearer(
            token,
            **{
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(size),
                "Content-Type": "application/offset+octet-stream",
            },
        ),
        timeout=900,
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["Upload-Offset"] == str(size)
    file_id = int(answer.headers["Lockbox-File-Id"])
    node = cluster.galera.nodes[2]
    connection = MySQLdb.connect(host="127.0.0.1", port=node.port, user="root")
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT @@wsrep_max_ws_size")
        (max_ws_size,) = cursor.fetchone()
    finally:
        connection.close()
    assert max_ws_size == 2147483647  # the default, untouched
    for app in cluster.apps:
        assert download_digest(app.url, token, file_id) == (200, digest.hexdigest())


def test_slow_clients_do_not_starve_others_behind_nginx_on_the_cluster(cluster):
    attackers = slow_clients(cluster.nginx.port, 40)
    try:
        time.sleep(1)
        timings = [time_to_sign_in(cluster.nginx.url, timeout=5) for _ in range(10)]
        assert None not in timings, timings
        assert max(timings) < 2, timings
    finally:
        for sock in attackers:
            sock.close()


def test_healthz_drains_a_node_that_is_not_synced(cluster):
    _, second = cluster.apps
    node = cluster.galera.nodes[1]
    connection = MySQLdb.connect(host="127.0.0.1", port=node.port, user="root")
    try:
        cursor = connection.cursor()
        cursor.execute("SET GLOBAL wsrep_desync = ON")
        health = requests.get(second.url + "/healthz", timeout=10)
        assert health.status_code == 503
        assert health.json()["cluster"] == "Primary, Donor/Desynced"
        cursor.execute("SET GLOBAL wsrep_desync = OFF")
    finally:
        connection.close()
    deadline = time.monotonic() + 30
    while requests.get(second.url + "/healthz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_metrics_add_up_every_workers_requests(cluster):
    app = cluster.apps[0]
    token = sign_in(app)["token"]
    for _ in range(30):
        assert (
            requests.get(app.url + "/files", headers=bearer(token)).status_code == 200
        )
    text = requests.get(
        app.url + "/metrics", headers=bearer(cluster.metrics_token), timeout=10
    ).text
    pattern = (
        r'lockbox_requests_total\{method="GET",route="/files",status="200"\} (\d+)'
    )
    assert int(float(re.search(pattern, text)[1])) >= 30
    # Two workers answered them (WEB_CONCURRENCY=2): both appear in the sum.
    assert "lockbox_request_duration_seconds_bucket" in text
    assert requests.get(app.url + "/metrics", timeout=10).status_code == 401


def test_a_killed_node_fails_only_its_requests_and_rejoins_by_ist(cluster):
    first, second = cluster.apps
    node = cluster.galera.nodes[0]  # the first instance's
    token = sign_in(second)["token"]
    acknowledged: dict[int, str] = {}
    answers = {first.name: [], second.name: []}
    stop = threading.Event()

    def traffic(app, seed):
        number = 0
        while not stop.is_set():
            number += 1
            # Small files, a few a second: what the cluster writes while the
            # node is away stays within its gcache, so the node can catch up
            # incrementally (IST) when it is back.
            content = random_bytes(64 * 1024 + number, seed=seed + number)
            time.sleep(0.05)
            try:
                answer = post_file(app.url, token, content, timeout=60)
            except requests.RequestException as error:
                answers[app.name].append(type(error).__name__)
                continue
            answers[app.name].append(answer.status_code)
            if answer.status_code == 201:
                acknowledged[answer.json()["id"]] = hashlib.sha256(content).hexdigest()

    listings: list[tuple[float, int]] = []

    def list_files():
        while not stop.is_set():
            began = time.monotonic()
            answer = requests.get(second.url + "/files", headers=bearer(token))
            listings.append((time.monotonic() - began, answer.status_code))
            time.sleep(0.1)

    threads = [
        threading.Thread(target=traffic, args=(app, seed))
        for seed, app in ((1000, first), (2000, second), (3000, second))
    ]
    threads.append(threading.Thread(target=list_files))
    for thread in threads:
        thread.start()
    time.sleep(3)
    node.kill()
    time.sleep(10)
    stop.set()
    for thread in threads:
        thread.join()
    # With deploy/galera/'s failure detection the survivors pause for about
    # 3 s, well within the default 10 s bound on a read: every listing
    # through the surviving node is answered, none refused.
    assert max(took for took, _ in listings) < 8, listings
    assert {status for _, status in listings} == {200}, listings
    # The surviving node went on; the dead node's instance answered 503.
    problems = [
        line
        for line in second.output().splitlines()
        if " ERROR " in line or " WARNING " in line
    ]
    after_kill = answers[second.name][-3:]
    assert after_kill and set(after_kill) == {201}, (answers[second.name], problems)
    assert 503 in answers[first.name], answers[first.name]
    assert set(answers[first.name]) <= {201, 503}, answers[first.name]
    assert set(answers[second.name]) <= {201}, (answers[second.name], problems)
    # What a client was told was stored is there; nothing half-written shows.
    for file_id, sha in acknowledged.items():
        stored = requests.get(f"{second.url}/files/{file_id}", headers=bearer(token))
        assert stored.status_code == 200 and stored.json()["sha256"] == sha
    listed = requests.get(
        second.url + "/files", params={"per_page": 200}, headers=bearer(token)
    ).json()
    assert listed["total"] >= len(acknowledged)
    assert all(item["sha256"] for item in listed["items"])
    # The node comes back, catches up incrementally, and serves again.
    logged_before = len(node.log_file.read_bytes())
    node.start(timeout=180)
    node.wait_synced(timeout=180)
    rejoining = node.log_file.read_bytes()[logged_before:].decode(errors="replace")
    transfer = [
        line
        for line in rejoining.splitlines()
        if "IST" in line or "SST" in line or "position" in line
    ]
    # Galera's state-transfer handshake logs "SST received" either way; with
    # IST the rsync script copies nothing ("rsync IST completed").
    assert "IST received" in rejoining, (node.start_position, transfer)
    assert "rsync IST completed on joiner" in rejoining, (
        node.start_position,
        transfer,
    )
    deadline = time.monotonic() + 30
    while requests.get(first.url + "/healthz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    for file_id, sha in list(acknowledged.items())[-5:]:
        for app in cluster.apps:
            assert download_digest(app.url, token, file_id) == (200, sha)


def test_a_killed_instance_is_left_out_by_nginx_within_seconds(cluster):
    first, second = cluster.apps
    token = sign_in(cluster.nginx)["token"]
    stored = post_file(cluster.nginx.url, token, b"before the crash").json()["id"]
    first.kill()
    started = time.monotonic()
    statuses = []
    while time.monotonic() - started < 10:
        statuses.append(
            requests.get(
                cluster.nginx.url + "/files", headers=bearer(token)
            ).status_code
        )
    # GETs are retried on the other instance: not one fails.
    assert set(statuses) == {200}, statuses
    answers = [
        post_file(cluster.nginx.url, token, b"after").status_code for _ in range(10)
    ]
    assert set(answers) == {201}, answers
    file = requests.get(f"{second.url}/files/{stored}", headers=bearer(token))
    assert file.status_code == 200
