"""Podman for the container tests: a configuration that works without
systemd, images built from Debian's packages (no registry is reached), and
compose projects brought up and always taken down again.

Images are built only when missing: each is tagged with a digest of what it
is built from, and podman's image store lives outside the checkout
(``LOCKBOX_CONTAINER_STORE``, by default /var/tmp/lockbox-containers), so a
second run, or a fresh clone on the same machine, finds them. The app's own
image is built every time, from podman's layer cache when nothing changed.
"""

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.server import ROOT

STORE = Path(os.environ.get("LOCKBOX_CONTAINER_STORE", "/var/tmp/lockbox-containers"))
IMAGES = ROOT / "tests" / "container"
SUITE = "bookworm"
# Debian's packages, from the mirror apt already uses here.
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The tools the tests need, as Debian names them (and podman-compose from PyPI).
COMMANDS = ("podman", "buildah", "debootstrap", "runc", "slirp4netns")

SLIM_DPKG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""
SLIM_REMOVE = (
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*_*",
    "usr/share/doc/*/[!c]*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/[!l]*",
    "var/log/*.log",
)

CONTAINERS_CONF = """\
# Podman without systemd, in a sandbox: cgroups by hand, runc (crun fails on
# a hybrid cgroup layout), events to a file, limits the sandbox allows.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"""

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{root}/storage"
runroot = "{root}/run"
"""


def missing_tools() -> list[str]:
    """The commands the container tests need that this machine lacks."""
    return [name for name in COMMANDS if shutil.which(name) is None]


@functools.cache
def podman_env() -> dict:
    """The environment podman and podman-compose run with here (its
    configuration files written once per test session)."""
    STORE.mkdir(parents=True, exist_ok=True)
    containers_conf = STORE / "containers.conf"
    storage_conf = STORE / "storage.conf"
    containers_conf.write_text(CONTAINERS_CONF)
    storage_conf.write_text(STORAGE_CONF.format(root=STORE))
    return {
        **os.environ,
        "CONTAINERS_CONF": str(containers_conf),
        "CONTAINERS_STORAGE_CONF": str(storage_conf),
    }


def podman(*args: str, check: bool = True, timeout: float = 900, **kwargs):
    """Run ``podman args...`` with the tests' configuration; its output as text."""
    return subprocess.run(
        ["podman", *args],
        env=podman_env(),
        check=check,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def has_image(tag: str) -> bool:
    """Whether podman's store holds an image tagged ``tag``."""
    return podman("image", "exists", tag, check=False).returncode == 0


def digest(*parts: bytes | str) -> str:
    """A short digest naming an image's inputs."""
    hashed = hashlib.sha256()
    for part in parts:
        hashed.update(part.encode() if isinstance(part, str) else part)
        hashed.update(b"\0")
    return hashed.hexdigest()[:12]


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine."""
    for path in [
        Path("/etc/apt/sources.list"),
        *Path("/etc/apt/sources.list.d").glob("*"),
    ]:
        try:
            text = path.read_text()
        except OSError:
            continue
        # deb822 (URIs: ...) and one-line (deb URL suite ...) sources alike.
        for url in re.findall(
            r"^(?:URIs:|deb)\s+(?:\[[^]]*\]\s+)?(https?://\S+?/debian)/?\s",
            text,
            re.MULTILINE,
        ):
            return url
    return DEFAULT_MIRROR


def base_image() -> str:
    """Debian bookworm built from Debian's packages (debootstrap's minbase),
    imported into podman; built once per mirror."""
    mirror = debian_mirror()
    inputs = digest(SUITE, mirror, SLIM_DPKG, *SLIM_REMOVE)
    tag = f"localhost/lockbox-test/debian:{SUITE}-{inputs}"
    if has_image(tag):
        return tag
    with tempfile.TemporaryDirectory(dir=STORE, prefix="rootfs-") as rootfs:
        subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, rootfs, mirror],
            check=True,
            capture_output=True,
            timeout=900,
        )
        # What the image's apt reads: the same mirror, its updates too.
        Path(rootfs, "etc/apt/sources.list").write_text(
            f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n"
        )
        # Slim, as the public debian:bookworm-slim is: no downloaded packages,
        # package lists, documentation, manual pages or translations, and
        # dpkg told to leave them out of every package installed later.
        Path(rootfs, "etc/dpkg/dpkg.cfg.d/slim").write_text(SLIM_DPKG)
        for leftover in SLIM_REMOVE:
            for path in Path(rootfs).glob(leftover):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        podman("import", "-", tag, stdin=tar.stdout)
        tar.wait()
    return tag


def service_image(name: str, base: str) -> str:
    """One of the test-only images made from Debian's packages in place of the
    official ones (tests/container/NAME.Containerfile, with its files)."""
    containerfile = IMAGES / f"{name}.Containerfile"
    inputs = [containerfile, *sorted(IMAGES.glob(f"{name}-*"))]
    inputs_digest = digest(base, *(path.read_bytes() for path in inputs))
    tag = f"localhost/lockbox-test/{name}:{inputs_digest}"
    if not has_image(tag):
        build(containerfile, IMAGES, tag, {"BASE": base})
    return tag


def extra_certificates() -> None:
    """The host's own certificate authorities (a proxy that inspects TLS, as
    here) copied in for the image build (git ignores them)."""
    target = ROOT / "deploy" / "ca-certificates"
    for path in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copyfile(path, target / path.name)


def app_image(base: str, tag: str = "localhost/lockbox-test/lockbox:latest") -> str:
    """Lockbox's image, built from the checkout's Containerfile on ``base``
    (podman's layer cache makes a rebuild of unchanged inputs quick)."""
    extra_certificates()
    build(ROOT / "Containerfile", ROOT, tag, {"BASE": base})
    return tag


def build(containerfile: Path, context: Path, tag: str, args: dict) -> None:
    """``podman build`` in the Docker format (which keeps HEALTHCHECK)."""
    build_args = [
        item
        for name, value in args.items()
        for item in ("--build-arg", f"{name}={value}")
    ]
    done = podman(
        "build",
        "--format",
        "docker",
        "--network",
        "host",
        "-f",
        str(containerfile),
        "-t",
        tag,
        *build_args,
        str(context),
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"podman build of {tag} failed:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )


def image_size(tag: str) -> int:
    """The image's size in bytes, as podman reports it."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


class ComposeProject:
    """A compose project run by podman-compose from ``directory``, with the
    files given (later ones override earlier ones); taken down, with its
    volumes, by ``remove``."""

    def __init__(self, directory: Path, files: list[str], env: dict, name: str):
        self.directory = directory
        self.files = files
        self.name = name
        self.env = {**podman_env(), **env}

    def compose(self, *args: str, timeout: float = 600, check: bool = True):
        """``podman-compose -p NAME -f ... args``; its output as text."""
        files = [item for name in self.files for item in ("-f", name)]
        done = subprocess.run(
            [podman_compose(), "-p", self.name, *files, *args],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"podman-compose {' '.join(args)} failed:\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def container(self, service: str) -> str:
        """The name podman-compose gives a service's (first) container."""
        return f"{self.name}_{service}_1"

    def logs(self, service: str) -> str:
        """What a service's container has printed so far."""
        done = podman("logs", self.container(service), check=False)
        return done.stdout + done.stderr

    def remove(self) -> None:
        """Stop and remove every container, network and volume of the project,
        whatever state it is in."""
        self.compose("down", "-v", "-t", "10", check=False, timeout=300)
        names = podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
        mine = [name for name in names if name.startswith(self.name + "_")]
        if mine:
            podman("rm", "-f", *mine, check=False)
        podman("network", "rm", "-f", f"{self.name}_default", check=False)
        volumes = podman(
            "volume", "ls", "--format", "{{.Name}}", check=False
        ).stdout.split()
        mine = [name for name in volumes if name.startswith(self.name + "_")]
        if mine:
            podman("volume", "rm", "-f", *mine, check=False)


def podman_compose() -> str:
    """podman-compose from the tests' virtualenv (requirements-dev.txt)."""
    here = Path(sys.executable).with_name("podman-compose")
    return str(here) if here.exists() else "podman-compose"
