"""Who is asking has one owner: caller.py. Every route gets its caller from
it, and no other module reads a credential from the request."""

import ast
from pathlib import Path

import pytest
from flask import g

from harness.server import ROOT
from helpers import bearer, create_upload, tus_headers, uploaded

pytestmark = pytest.mark.one_database

RULES = {
    "account",
    "password",
    "refresh_token",
    "link",
    "upload_key",
    "metrics",
    "nobody",
}
# Flask's own route for the files under static/: no caller, nothing secret.
NOT_OURS = {"static"}


def test_every_route_gets_its_caller_from_the_resolver(app):
    seen = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_OURS:
            continue
        view = app.view_functions[rule.endpoint]
        assert getattr(view, "caller_rule", None) in RULES, rule.rule
        seen.add(view.caller_rule)
    assert seen == RULES


def test_the_caller_is_who_the_credential_says(app, client, auth):
    callers = []

    owners = []

    @app.after_request
    def note(response):
        caller = g.get("caller")
        callers.append((caller.kind, caller.user and caller.user.username))
        owner = g.get("upload_owner")
        owners.append(owner and owner.username)
        return response

    auth.create_user()
    token = auth.token()
    file_id = uploaded(client, token)["id"]
    callers.clear()
    client.get("/files", headers=bearer(token))
    client.get("/livez")
    made = client.post(
        "/tokens", json={"name": "ci", "scopes": ["files:read"]}, headers=bearer(token)
    ).get_json()
    client.get(f"/files/{file_id}", headers=bearer(made["token"]))
    share = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(token))
    link = share.get_json()["url"].removeprefix("http://localhost")
    client.get(link)
    upload = create_upload(client, token, length=5).headers["Location"]
    key_path = upload.removeprefix("http://localhost")
    # The key alone opens the upload for whoever holds it: the caller is
    # nobody's account, and the upload's owner goes by another name.
    client.head(key_path, headers=tus_headers())
    client.head(key_path, headers=tus_headers(token))
    assert callers == [
        ("session", "alice"),
        ("nobody", None),
        ("session", "alice"),
        ("access_token", "alice"),
        ("session", "alice"),
        ("link", None),
        ("session", "alice"),
        ("upload_key", None),
        ("upload_key", "alice"),
    ]
    assert owners[-3:] == [None, "alice", "alice"]


# What a request carries that only the resolver may read.
CREDENTIAL_HEADERS = {"authorization"}
CREDENTIAL_ARGUMENTS = {"token", "claim"}


def _is_request(node, *attributes) -> bool:
    """Whether ``node`` is ``request.<attributes...>``."""
    for attribute in reversed(attributes):
        if not isinstance(node, ast.Attribute) or node.attr != attribute:
            return False
        node = node.value
    return isinstance(node, ast.Name) and node.id == "request"


def _key(node) -> str | None:
    """The constant string a subscript or call asks for, if it is one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _asked(node) -> tuple[ast.AST, ast.AST] | None:
    """(container, key) of ``container[key]``, ``container.get(key, ...)`` or
    ``key in container``; None for anything else."""
    if isinstance(node, ast.Subscript):
        return node.value, node.slice
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
    ):
        return node.func.value, node.args[0]
    if isinstance(node, ast.Compare) and len(node.comparators) == 1:
        return node.comparators[0], node.left
    return None


def _reads_a_credential(container, key) -> bool:
    """Whether asking ``container`` for ``key`` reads a credential."""
    text = _key(key)
    if text is not None:
        return (
            (_is_request(container, "headers") and text.lower() in CREDENTIAL_HEADERS)
            or (_is_request(container, "args") and text in CREDENTIAL_ARGUMENTS)
            or (_is_request(container, "cookies") and text.startswith("lockbox_"))
        )
    # A cookie named by a constant: the credential modules' *_COOKIE names.
    name = getattr(key, "attr", getattr(key, "id", ""))
    return _is_request(container, "cookies") and name.endswith("_COOKIE")


def credential_reads(tree) -> list[int]:
    """The lines of a module that read a credential from the request."""
    lines = set()
    for node in ast.walk(tree):
        if _is_request(node, "authorization"):
            lines.add(node.lineno)
        asked = _asked(node)
        if asked is not None and _reads_a_credential(*asked):
            lines.add(node.lineno)
    return sorted(lines)


def app_modules() -> list[Path]:
    """The app's own modules: the flat top level."""
    return sorted(path for path in ROOT.glob("*.py") if path.name != "gunicorn.conf.py")


def test_no_module_but_the_resolver_reads_credentials_from_the_request():
    reads = {
        path.name: credential_reads(ast.parse(path.read_text()))
        for path in app_modules()
    }
    elsewhere = {name: lines for name, lines in reads.items() if lines}
    resolver = elsewhere.pop("caller.py", [])
    assert elsewhere == {}
    # The check finds what it looks for: the resolver's own reads.
    assert len(resolver) >= 5


@pytest.mark.parametrize(
    "source",
    [
        "request.authorization",
        'request.headers.get("Authorization", "")',
        'request.headers["authorization"]',
        'request.args.get("token")',
        '"token" in request.args',
        'request.cookies.get("lockbox_share")',
        "request.cookies.get(share_links.CLAIM_COOKIE)",
    ],
)
def test_the_check_finds_every_way_of_reading_a_credential(source):
    assert credential_reads(ast.parse(source)) == [1]
