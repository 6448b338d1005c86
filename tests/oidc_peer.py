"""A real OpenID Connect provider for the single-sign-on tests.

``OidcPeer`` runs oidc-provider (tests/oidc_provider.mjs, under node) on
127.0.0.1 behind a small proxy of its own. The proxy's address is the issuer:
the relying party only ever talks to the proxy, which can tamper with the ID
tokens the token endpoint hands out, or stop answering as a provider that is
down would.

``sign_in_at_provider`` signs in at the provider's login form with a
``requests.Session``, the way a browser would.
"""

import base64
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.server import free_port

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_SCRIPT = ROOT / "tests" / "oidc_provider.mjs"
READY_TIMEOUT = 20

TAMPER_MODES = (
    None,
    "expired",
    "wrong_audience",
    "other_issuer",
    "forged",
    "bad_nonce",
)

# Headers that belong to one connection, not to the message: never relayed.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


def _b64(number: int) -> str:
    """An integer as the unpadded base64url of its big-endian bytes (JWK)."""
    data = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rsa_private_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict:
    """``key`` as a private JWK (RS256, for signing) named ``kid``."""
    private = key.private_numbers()
    public = private.public_numbers
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": _b64(public.n),
        "e": _b64(public.e),
        "d": _b64(private.d),
        "p": _b64(private.p),
        "q": _b64(private.q),
        "dp": _b64(private.dmp1),
        "dq": _b64(private.dmq1),
        "qi": _b64(private.iqmp),
    }


def tampered_id_token(id_token: str, mode: str, key, kid: str) -> str:
    """``id_token`` with its claims changed as ``mode`` says, signed again with
    ``key`` (RS256, under ``kid``).

    Modes: ``expired`` (exp and iat an hour in the past), ``wrong_audience``,
    ``other_issuer``, ``bad_nonce``, and ``forged`` (claims untouched: the
    caller passes a key the provider never published).
    """
    claims = jwt.decode(id_token, options={"verify_signature": False})
    if mode == "expired":
        lifetime = claims["exp"] - claims["iat"]
        claims["exp"] = int(time.time()) - 3600
        claims["iat"] = claims["exp"] - lifetime
    elif mode == "wrong_audience":
        claims["aud"] = "someone-else"
    elif mode == "other_issuer":
        claims["iss"] = "http://127.0.0.1:1/other"
    elif mode == "bad_nonce":
        claims["nonce"] = "x"
    elif mode != "forged":
        raise ValueError(f"unknown tamper mode {mode!r}")
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


class _Proxy:
    """An HTTP proxy on 127.0.0.1 in front of the provider, with a switch for
    tampering with ID tokens and another for refusing connections."""

    def __init__(self, upstream_port: int, key, kid: str):
        """Forwards to 127.0.0.1:``upstream_port``; ``key`` signs tampered tokens."""
        self.upstream_port = upstream_port
        self.key = key
        self.kid = kid
        self.forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.mode = None
        self.token_path = "/token"
        self.port = None
        self._server = None
        self._thread = None
        self._lock = threading.Lock()

    def start(self, port: int = 0) -> None:
        """Listen on ``port`` (0: any free one) and serve in a thread."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_request(self):
                proxy.relay(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_request
            do_HEAD = do_OPTIONS = do_request

            def log_message(self, format, *args):
                pass

        with self._lock:
            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            self._server = server
            self.port = server.server_address[1]
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Close the listening socket: connections are refused from now on."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

    @property
    def running(self) -> bool:
        """Whether the proxy listens."""
        return self._server is not None

    def relay(self, handler: BaseHTTPRequestHandler) -> None:
        """Forward one request to the provider and its answer back."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(
            "127.0.0.1", self.upstream_port, timeout=30
        )
        try:
            upstream.putrequest(
                handler.command, handler.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in handler.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    upstream.putheader(name, value)
            upstream.endheaders(body)
            answer = upstream.getresponse()
            status, reason = answer.status, answer.reason
            headers = answer.getheaders()
            content = answer.read()
        except OSError as error:
            upstream.close()
            handler.send_error(502, f"provider unreachable: {error}")
            return
        upstream.close()
        mode = self.mode
        if (
            mode is not None
            and handler.command == "POST"
            and urlsplit(handler.path).path == self.token_path
            and status == 200
        ):
            content = self._tamper(content, mode)
        handler.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                handler.send_header(name, value)
        if handler.command == "HEAD":
            length = answer.getheader("Content-Length", "0")
        else:
            length = str(len(content))
        handler.send_header("Content-Length", length)
        handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(content)

    def _tamper(self, content: bytes, mode: str) -> bytes:
        """The token endpoint's JSON answer with its ID token tampered with."""
        tokens = json.loads(content)
        if "id_token" not in tokens:
            return content
        key = self.forged_key if mode == "forged" else self.key
        tokens["id_token"] = tampered_id_token(tokens["id_token"], mode, key, self.kid)
        return json.dumps(tokens).encode()


class OidcPeer:
    """oidc-provider on 127.0.0.1 behind a proxy whose address is the issuer.

    ``clients``: a list of ``{client_id, client_secret, redirect_uris}``, each
    allowed the authorization_code and refresh_token grants, response type
    ``code`` and ``client_secret_basic`` (any other client metadata given,
    e.g. ``token_endpoint_auth_method: "client_secret_post"``, is passed on).
    PKCE (S256) is required. Accounts are made with ``add_account``; sign in
    with the account's sub as the login and any password.

    Use it as a context manager (``with OidcPeer(clients) as peer:``) or call
    ``start`` and ``stop``.
    """

    def __init__(self, clients=()):
        """Nothing runs until ``start`` (or ``with``)."""
        self.clients = [dict(client) for client in clients]
        self.kid = f"peer-{uuid.uuid4().hex[:8]}"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_jwk = rsa_private_jwk(self.key, self.kid)
        self.port = None
        self.control_port = None
        self.issuer = None
        self.process = None
        self.stderr = ""
        self._proxy = None
        self._workdir = None
        self._reader = None
        self._ready = threading.Event()

    def start(self) -> "OidcPeer":
        """Start the provider and the proxy; wait (up to 20 s) until they answer."""
        self._workdir = tempfile.TemporaryDirectory(prefix="oidc-peer-")
        workdir = Path(self._workdir.name)
        jwks = workdir / "jwks.json"
        jwks.write_text(json.dumps({"keys": [self.private_jwk]}))
        self.port = free_port()
        self.control_port = free_port()
        self._proxy = _Proxy(self.port, self.key, self.kid)
        self._proxy.start()
        self.issuer = f"http://127.0.0.1:{self._proxy.port}"
        env = {
            **os.environ,
            "OIDC_PEER_PORT": str(self.port),
            "OIDC_PEER_CONTROL_PORT": str(self.control_port),
            "OIDC_PEER_ISSUER": self.issuer,
            "OIDC_PEER_JWKS": str(jwks),
            "OIDC_PEER_CLIENTS": json.dumps(self.clients),
        }
        self._stderr_file = open(workdir / "stderr.log", "w+b")
        self.process = subprocess.Popen(
            ["node", str(PROVIDER_SCRIPT)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                why = (
                    f"exited with status {self.process.returncode}"
                    if self.process.poll() is not None
                    else f"was not ready within {READY_TIMEOUT} s"
                )
                self.stop()
                raise RuntimeError(f"oidc-provider {why}; its stderr:\n{self.stderr}")
        discovery = requests.get(
            self.issuer + "/.well-known/openid-configuration", timeout=10
        ).json()
        self._proxy.token_path = urlsplit(discovery["token_endpoint"]).path
        return self

    def _read_stdout(self):
        """Watch for "ready", then keep draining node's stdout."""
        for line in self.process.stdout:
            if line.strip() == b"ready":
                self._ready.set()

    def output_so_far(self) -> str:
        """What the provider has written to stderr up to now (its errors)."""
        if self.process is None:
            return self.stderr
        return (
            (Path(self._workdir.name) / "stderr.log")
            .read_bytes()
            .decode(errors="replace")
        )

    def stop(self) -> None:
        """Stop the provider and the proxy, and remove the key file."""
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            self._reader.join(timeout=10)
            self.process.stdout.close()
            self._stderr_file.seek(0)
            self.stderr = self._stderr_file.read().decode(errors="replace")
            self._stderr_file.close()
            self.process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _control(self, path: str, body=None) -> dict:
        """POST to the provider's control API; its JSON answer."""
        answer = requests.post(
            f"http://127.0.0.1:{self.control_port}{path}", json=body, timeout=10
        )
        answer.raise_for_status()
        return answer.json()

    def add_account(
        self,
        sub: str,
        preferred_username: str,
        email: str | None = None,
        groups=(),
        *,
        name: str | None = None,
        email_verified: bool = True,
    ) -> dict:
        """Create (or replace) an enabled account; its claims as the provider
        keeps them."""
        return self._control(
            "/accounts",
            {
                "sub": sub,
                "preferred_username": preferred_username,
                "email": email,
                "email_verified": email_verified,
                "name": name,
                "groups": list(groups),
            },
        )

    def disable(self, sub: str) -> None:
        """Disable an account: it can neither sign in nor refresh its tokens."""
        self._control(f"/accounts/{quote(sub, safe='')}/disable")

    def enable(self, sub: str) -> None:
        """Enable an account again."""
        self._control(f"/accounts/{quote(sub, safe='')}/enable")

    def tamper(self, mode: str | None) -> None:
        """Tamper with every ID token the token endpoint hands out from now on.

        ``mode``: None (no tampering), "expired", "wrong_audience",
        "other_issuer", "forged" (signed with another key under the same
        kid) or "bad_nonce".
        """
        if mode not in TAMPER_MODES:
            raise ValueError(f"unknown tamper mode {mode!r}")
        self._proxy.mode = mode

    def down(self) -> None:
        """The provider is down: connections to the issuer are refused."""
        self._proxy.stop()

    def up(self) -> None:
        """The provider is back, at the same address."""
        if not self._proxy.running:
            self._proxy.start(int(urlsplit(self.issuer).port))


class _Forms(HTMLParser):
    """The forms of an HTML page: action, method and their inputs' values."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self.alerts = []
        self._in_alert = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append(
                {
                    "action": attributes.get("action") or "",
                    "method": (attributes.get("method") or "get").lower(),
                    "fields": {},
                }
            )
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value") or ""
        elif attributes.get("role") == "alert":
            self._in_alert = True
            self.alerts.append("")

    def handle_endtag(self, tag):
        self._in_alert = False

    def handle_data(self, data):
        if self._in_alert:
            self.alerts[-1] += data


def sign_in_at_provider(
    session: requests.Session, authorize_url: str, login: str, password: str = "x"
) -> str:
    """Sign in as ``login`` at the provider ``authorize_url`` belongs to.

    Follows the provider's own redirects and fills in its login form, until
    it redirects somewhere else: that URL (the client's redirect_uri with
    ``code`` and ``state``, or an error) is returned, not requested.
    """
    parts = urlsplit(authorize_url)
    provider = f"{parts.scheme}://{parts.netloc}"
    url, method, data = authorize_url, "get", None
    for _ in range(20):
        answer = session.request(
            method, url, data=data, allow_redirects=False, timeout=10
        )
        if answer.is_redirect:
            target = urljoin(url, answer.headers["Location"])
            if target != provider and not target.startswith(provider + "/"):
                return target
            url, method, data = target, "get", None
            continue
        forms = _Forms()
        forms.feed(answer.text)
        if forms.alerts or not forms.forms:
            detail = " ".join(forms.alerts) or answer.text[:500]
            raise RuntimeError(
                f"sign-in failed at {url} ({answer.status_code}): {detail}"
            )
        form = forms.forms[0]
        data = dict(form["fields"])
        if "login" in data:
            data.update(login=login, password=password)
        url, method = urljoin(url, form["action"]), form["method"]
    raise RuntimeError(f"sign-in at {provider} did not finish within 20 steps")
