"""compose.yaml as a person runs it: Lockbox's image built from the
Containerfile, with MariaDB, Redis and nginx (images from Debian's packages
in place of the official ones, tests/container/compose.test.yaml), brought up
by podman-compose. Sign in, upload, list, download; restart the app; take
everything down and up again with the volume kept: nothing is lost.

Skipped only where podman is missing, and never in CI.
"""

import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import requests

from harness import containers
from harness.server import ROOT, free_port
from helpers import (
    README_ANSWERS,
    REQUIRE_MYSQL,
    random_bytes,
    run_readme_walk_through,
)

pytestmark = pytest.mark.slow

URL = "http://127.0.0.1:5000"
# What the README promises of the image.
IMAGE_LIMIT = 250 * 1000 * 1000
UPLOAD_SIZE = 20 * 1000 * 1000


def require_podman() -> None:
    """Skip (or, in CI, fail) where the container tools are missing."""
    problem = None
    if containers.missing_tools():
        problem = f"missing: {', '.join(containers.missing_tools())}"
    elif os.geteuid() != 0:
        problem = "the container tests run podman as root"
    if problem:
        if REQUIRE_MYSQL or os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def images():
    """The base, the stand-ins for the official images, and Lockbox's own."""
    require_podman()
    base = containers.base_image()
    return {
        "LOCKBOX_IMAGE": containers.app_image(base),
        "TEST_MARIADB_IMAGE": containers.service_image("mariadb", base),
        "TEST_REDIS_IMAGE": containers.service_image("redis", base),
        "TEST_NGINX_IMAGE": containers.service_image("nginx", base),
    }


def project_directory(tmp_path, compose_file: str):
    """A folder like a checkout's, for compose to run in: the shipped compose
    file, nginx's settings, the secrets script (run there), the test override."""
    shutil.copy(ROOT / compose_file, tmp_path / compose_file)
    for folder in ("nginx", "galera"):
        shutil.copytree(ROOT / "deploy" / folder, tmp_path / "deploy" / folder)
    shutil.copy(ROOT / "deploy" / "make-secrets", tmp_path / "deploy" / "make-secrets")
    for name in ("compose.test.yaml", "compose.cluster.test.yaml"):
        shutil.copy(ROOT / "tests" / "container" / name, tmp_path / name)
    made = subprocess.run(
        ["sh", "deploy/make-secrets"], cwd=tmp_path, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    return tmp_path


def wait_for(url: str, seconds: float, project, services=None) -> None:
    """Until ``url`` answers 200, or fail with the containers' logs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    logs = {service: project.logs(service)[-3000:] for service in services or SERVICES}
    pytest.fail(f"{url} did not answer in {seconds} s: {logs}")


SERVICES = ("lockbox", "mariadb", "nginx", "redis")


def first_password(project, service="lockbox") -> str:
    """The administrator's password the first start printed, once."""
    logs = project.logs(service)
    found = re.findall(r"password: (\S+)", logs)
    assert len(found) == 1, logs[-3000:]
    return found[0]


def sign_in(password: str, url: str = URL) -> str:
    """The README's first step: Basic auth on GET /login gives a token."""
    answer = requests.get(url + "/login", auth=("admin", password), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def upload(token: str, content: bytes, url: str = URL) -> dict:
    """The README's form upload (?token= in the URL)."""
    answer = requests.post(
        f"{url}/upload?token={token}",
        files={"inputFile": ("twenty.bin", content)},
        timeout=120,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def downloaded_sha256(token: str, file_id: int, url: str = URL) -> str:
    """The SHA-256 of a file's download, streamed."""
    digest = hashlib.sha256()
    with requests.get(
        f"{url}/files/{file_id}/download",
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=120,
    ) as answer:
        assert answer.status_code == 200, answer.text
        for piece in answer.iter_content(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def cluster_size(project, node: str, expected: int, seconds: float = 120) -> None:
    """Until Galera node ``node`` says the cluster has ``expected`` members."""
    deadline = time.monotonic() + seconds
    while True:
        done = containers.podman(
            "exec",
            project.container(node),
            "sh",
            "-c",
            'mariadb -uroot -p"$(cat /run/secrets/db_root_password)" -N '
            "-e \"SHOW STATUS LIKE 'wsrep_cluster_size'\"",
            check=False,
        )
        if done.returncode == 0 and done.stdout.split()[-1:] == [str(expected)]:
            return
        assert time.monotonic() < deadline, done.stdout + done.stderr
        time.sleep(2)


def healthy(project, service: str, seconds: float = 90) -> None:
    """The image's HEALTHCHECK passes (podman runs it only when asked: no
    systemd timers here)."""
    deadline = time.monotonic() + seconds
    while True:
        done = containers.podman(
            "healthcheck", "run", project.container(service), check=False
        )
        if done.returncode == 0:
            return
        assert time.monotonic() < deadline, done.stdout + done.stderr
        time.sleep(2)


def test_compose_keeps_every_file_through_restarts_and_a_new_up(images, tmp_path):
    assert port_is_free(5000), "127.0.0.1:5000 is taken: compose.yaml publishes it"
    # Without its secrets the image refuses to start, in one line.
    refused = containers.podman(
        "run", "--rm", "--network", "none", images["LOCKBOX_IMAGE"], check=False
    )
    assert refused.returncode != 0
    assert "Lockbox cannot start: SECRET_KEY is not set" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr

    directory = project_directory(tmp_path, "compose.yaml")
    project = containers.ComposeProject(
        directory,
        ["compose.yaml", "compose.test.yaml"],
        images,
        f"lockboxtest{uuid.uuid4().hex[:6]}",
    )
    try:
        project.compose("up", "-d")
        wait_for(URL + "/livez", 180, project)
        # The first start migrated the database and made an administrator.
        password = first_password(project)
        token = sign_in(password)
        content = random_bytes(UPLOAD_SIZE, seed=29)
        expected = hashlib.sha256(content).hexdigest()
        stored = upload(token, content)
        assert stored["sha256"] == expected
        listed = requests.get(
            URL + "/files", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert listed.status_code == 200, listed.text
        assert [item["id"] for item in listed.json()["items"]] == [stored["id"]]
        assert downloaded_sha256(token, stored["id"]) == expected

        # Stored sealed: the database holds no run of the file's bytes.
        sample = content[1000:1064].hex()
        query = f"SELECT COUNT(*) FROM file_chunk WHERE LOCATE(UNHEX('{sample}'), data)"
        found = containers.podman(
            "exec",
            project.container("mariadb"),
            "sh",
            "-c",
            'mariadb -uroot -p"$(cat /run/secrets/db_root_password)" -N lockbox '
            f'-e "{query}"',
        )
        assert found.stdout.strip() == "0", found.stdout + found.stderr

        # The image: not root, healthy, small.
        user = containers.podman("exec", project.container("lockbox"), "id", "-u")
        assert user.stdout.strip() != "0"
        healthy(project, "lockbox")
        size = containers.image_size(images["LOCKBOX_IMAGE"])
        print(f"Lockbox's image: {size / 1e6:.0f} MB")
        assert size < IMAGE_LIMIT, size

        # The app restarted: the same file, the same sign-in, no new admin.
        containers.podman("restart", "-t", "20", project.container("lockbox"))
        wait_for(URL + "/livez", 120, project)
        token = sign_in(password)
        assert downloaded_sha256(token, stored["id"]) == expected

        # Down and up again, the database's volume kept.
        project.compose("down", "-t", "20")
        project.compose("up", "-d")
        wait_for(URL + "/livez", 180, project)
        token = sign_in(password)
        assert downloaded_sha256(token, stored["id"]) == expected
        assert "Users exist already" in project.logs("lockbox")

        # The README's walk-through, as written, against the compose project.
        walk = tmp_path / "walk"
        walk.mkdir()
        report = random_bytes(300_000, seed=41)
        (walk / "report.pdf").write_bytes(report)
        (walk / "photo.jpg").write_bytes(random_bytes(20_000, seed=42))
        output = run_readme_walk_through(URL, password, walk)
        for answer in README_ANSWERS:
            assert answer in output, output
        assert (walk / "downloads" / "report.pdf").read_bytes() == report
        assert (walk / "shared.pdf").read_bytes() == report
        for service in SERVICES:
            assert "Traceback" not in project.logs(service), project.logs(service)
    finally:
        project.remove()


def test_the_cluster_compose_file_serves_one_file_through_both_instances(
    images, tmp_path
):
    assert port_is_free(5000), (
        "127.0.0.1:5000 is taken: compose.cluster.yaml publishes it"
    )
    directory = project_directory(tmp_path, "compose.cluster.yaml")
    ports = [free_port(), free_port()]
    project = containers.ComposeProject(
        directory,
        ["compose.cluster.yaml", "compose.cluster.test.yaml"],
        {**images, "TEST_PORT_1": str(ports[0]), "TEST_PORT_2": str(ports[1])},
        f"lockboxcluster{uuid.uuid4().hex[:6]}",
    )
    one, two = (f"http://127.0.0.1:{port}" for port in ports)
    services = ("db1", "db2", "db3", "migrate", "lockbox-1", "lockbox-2", "nginx")
    try:
        project.compose("up", "-d", timeout=300)
        for url in (one, two, URL):
            wait_for(url + "/livez", 300, project, services)
        # Three nodes in one cluster (the last may still be copying its state).
        for node in ("db1", "db2", "db3"):
            cluster_size(project, node, 3)
        # The one-shot service migrated and made the administrator; the
        # instances waited for it and made none.
        password = first_password(project, "migrate")
        for service in ("lockbox-1", "lockbox-2"):
            assert "password:" not in project.logs(service)

        content = random_bytes(5 * 1000 * 1000, seed=30)
        expected = hashlib.sha256(content).hexdigest()
        stored = upload(sign_in(password, one), content, one)
        assert downloaded_sha256(sign_in(password, two), stored["id"], two) == expected
        assert downloaded_sha256(sign_in(password), stored["id"]) == expected
        for service in services:
            assert "Traceback" not in project.logs(service), project.logs(service)
    finally:
        project.remove()
