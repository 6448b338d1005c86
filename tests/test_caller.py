"""Who is asking has one owner: caller.py. Every route gets its caller from
it, and no other module reads a credential from the request."""

import ast
import re
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
    "renewal",
    "link",
    "upload_key",
    "upload_request",
    "invitation",
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
        opened = caller.record if caller.kind == "upload_key" else None
        owners.append(opened and opened.owner.username)
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
    # nobody's account, and the upload's owner goes by another name
    # (caller.UploadAccess).
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


# What a request carries that only the resolver may read: these headers,
# query arguments, cookies and WSGI variables, in any spelling.
CREDENTIAL_KEYS = {
    "headers": {"authorization", "cookie"},
    "args": {"token", "claim", "refresh_token"},
    "environ": {"http_authorization", "http_cookie", "query_string"},
}
# Parts of the request that hold credentials, or hand out everything at once
# (the whole URL, its query string with any ?token= in it).
NEVER_READ = {"authorization", "values", "full_path", "url", "query_string"}
MAPPINGS = {"headers", "args", "cookies", "environ"}
# Reads with a key that is not a constant, each checked by hand: what it reads.
CHECKED_BY_HAND = {
    ("security.py", "cookies"): "whether Flask's own session cookie came",
}


def _request_names(tree) -> tuple[set[str], set[str]]:
    """The names the module gives Flask's ``request``, and Flask itself."""
    requests, flasks = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "flask":
            requests |= {a.asname or a.name for a in node.names if a.name == "request"}
        if isinstance(node, ast.Import):
            flasks |= {a.asname or a.name for a in node.names if a.name == "flask"}
    return requests, flasks


def _parents(tree) -> dict:
    """Each node's parent."""
    return {
        child: parent
        for parent in ast.walk(tree)
        for child in ast.iter_child_nodes(parent)
    }


def _constant(node) -> str | None:
    """The constant string ``node`` is, if it is one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _is_credential(mapping: str, key: str) -> bool:
    """Whether ``mapping[key]`` holds a credential."""
    if mapping == "cookies":
        return True  # the only cookies with a meaning are credentials'
    return key.lower() in CREDENTIAL_KEYS.get(mapping, set())


def _mapping_read(node, parents) -> tuple[str | None, bool]:
    """For ``request.<mapping>`` at ``node``: the key it is asked for (None
    when it is not a constant) and whether the use is one of the plain forms
    (``[key]``, ``.get(key)``, ``.getlist(key)``, ``key in``,
    ``args.to_dict()``)."""
    parent = parents.get(node)
    if isinstance(parent, ast.Subscript) and parent.value is node:
        return _constant(parent.slice), True
    if isinstance(parent, ast.Compare) and node in parent.comparators:
        return _constant(parent.left), True
    if isinstance(parent, ast.Attribute):
        call = parents.get(parent)
        if isinstance(call, ast.Call) and call.func is parent:
            if parent.attr in ("get", "getlist") and call.args:
                return _constant(call.args[0]), True
            if parent.attr == "to_dict" and node.attr == "args" and not call.args:
                # The query for a schema; reading a credential from it is not.
                outer = parents.get(call)
                if isinstance(outer, ast.Subscript):
                    return _constant(outer.slice), True
                return "", True
    return None, False


def credential_reads(tree, name: str = "") -> list[int]:
    """The lines of a module that read, or could read, a credential from the
    request: ``request.authorization``, ``.values`` and the like at all;
    headers, query arguments, cookies and WSGI variables but by a constant
    key that holds no credential; ``getattr`` on the request."""
    requests, flasks = _request_names(tree)
    parents = _parents(tree)

    def is_request(node) -> bool:
        if isinstance(node, ast.Name):
            return node.id in requests
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "request"
            and isinstance(node.value, ast.Name)
            and node.value.id in flasks
        )

    lines = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and node.args
            and is_request(node.args[0])
        ):
            lines.add(node.lineno)
        if not (isinstance(node, ast.Attribute) and is_request(node.value)):
            continue
        if node.attr in NEVER_READ:
            lines.add(node.lineno)
        elif node.attr in MAPPINGS:
            key, plain = _mapping_read(node, parents)
            if not plain:
                lines.add(node.lineno)
            elif key is None:
                if (name, node.attr) not in CHECKED_BY_HAND:
                    lines.add(node.lineno)
            elif _is_credential(node.attr, key):
                lines.add(node.lineno)
    return sorted(lines)


def app_modules() -> list[Path]:
    """The app's own modules: the flat top level."""
    return sorted(path for path in ROOT.glob("*.py") if path.name != "gunicorn.conf.py")


def test_no_module_but_the_resolver_reads_credentials_from_the_request():
    reads = {
        path.name: credential_reads(ast.parse(path.read_text()), path.name)
        for path in app_modules()
    }
    elsewhere = {name: lines for name, lines in reads.items() if lines}
    resolver = elsewhere.pop("caller.py", [])
    assert elsewhere == {}
    # The check finds what it looks for: the resolver's own reads.
    assert len(resolver) >= 5


def test_no_template_reads_the_request():
    # A page asks the resolver (page_token()), never the request itself.
    for path in (ROOT / "templates").glob("*.html"):
        assert not re.search(r"\brequest\.", path.read_text()), path.name


@pytest.mark.parametrize(
    "source",
    [
        "from flask import request\nrequest.authorization",
        'from flask import request\nrequest.headers.get("Authorization", "")',
        'from flask import request\nrequest.headers["authorization"]',
        'from flask import request\nrequest.args.get("token")',
        'from flask import request\n"token" in request.args',
        'from flask import request\nrequest.cookies.get("lockbox_share")',
        "from flask import request\nrequest.cookies.get(share_links.CLAIM_COOKIE)",
        'from flask import request\nrequest.environ["HTTP_AUTHORIZATION"]',
        'from flask import request\nrequest.values.get("token")',
        'from flask import request\nrequest.args.getlist("token")',
        'from flask import request\nrequest.args.to_dict()["token"]',
        'from flask import request\nrequest.headers.get_all("Authorization")',
        "from flask import request\nrequest.headers.get(name)",
        "from flask import request\nheaders = request.headers",
        "from flask import request\ndict(request.cookies)",
        'from flask import request as r\nr.args.get("token")',
        'import flask\nflask.request.headers.get("Authorization")',
        'from flask import request\ngetattr(request, "authorization")',
    ],
)
def test_the_check_finds_every_way_of_reading_a_credential(source):
    assert credential_reads(ast.parse(source)) != []


@pytest.mark.parametrize(
    "source",
    [
        'from flask import request\nrequest.headers.get("Tus-Resumable")',
        'from flask import request\nrequest.args.get("page")',
        "from flask import request\nrequest.args.to_dict()",
        'from flask import request\nrequest.environ.get("HTTP_X_REQUEST_ID", "")',
        'from flask import request\n"If-Range" in request.headers',
    ],
)
def test_the_check_lets_other_reads_be(source):
    assert credential_reads(ast.parse(source)) == []
