"""webhook_http.py: a webhook goes to a public address, the one checked, once."""

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import webhook_http
from helpers import self_signed
from webhook_http import Refused, check_url

LOCAL = ["127.0.0.1"]
PUBLIC_ADDRESS = "93.184.216.34"

REFUSED = [
    ("http://example.com/x", "only to https://"),
    ("ftp://example.com/x", "only to https://"),
    ("https://user:pw@example.com/", "user name or password"),
    ("https://token@example.com/", "user name or password"),
    ("https:///hook", "no host"),
    ("https://example.com:99999/", "not valid"),
    ("https://example.com:0/", "port must be"),
    ("https://[::1/", "not valid"),
    ("https://exa mple.com/", "spaces or control characters"),
    ("https://example.com/\nhook", "spaces or control characters"),
    ("https://example.com/héllo", "must be ASCII"),
    ("https://127.0.0.1/", "not a public address"),
    ("https://10.1.2.3/", "not a public address"),
    ("https://192.168.0.1/", "not a public address"),
    ("https://[::1]/", "not a public address"),
    ("https://169.254.169.254/latest", "not a public address"),
    ("https://[::ffff:127.0.0.1]/", "not a public address"),
    ("https://[::ffff:169.254.169.254]/", "not a public address"),
    ("https://0.0.0.0/", "not a public address"),
    ("https://100.64.0.1/", "not a public address"),
    ("https://224.0.0.1/", "not a public address"),
    ("https://[fc00::1]/", "not a public address"),
    ("https://[fe80::1]/", "not a public address"),
    ("https://[ff0e::1]/", "not a public address"),
    # 6to4, NAT64 and IPv4-compatible forms of 127.0.0.1 and 169.254.169.254.
    ("https://[2002:7f00:1::1]/", "not a public address"),
    ("https://[64:ff9b::a9fe:a9fe]/", "not a public address"),
    ("https://[::7f00:1]/", "not a public address"),
    # Teredo, its client 127.0.0.1 (stored inverted: 0x80fffffe).
    ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "not a public address"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_a_url_that_is_not_public_https_is_refused_when_saved(url, reason):
    with pytest.raises(Refused, match=reason):
        check_url(url, allow_hosts=[])


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_a_url_that_is_not_public_https_is_not_posted_to(url, reason):
    with pytest.raises(Refused, match=reason):
        webhook_http.post(url, b"{}", {}, allow_hosts=[])


@pytest.mark.parametrize(
    ("url", "allow_hosts"),
    [
        ("https://example.com/hook", []),
        ("https://example.com:8443/hook?team=1", []),
        (f"https://{PUBLIC_ADDRESS}/hook", []),
        ("https://[2606:4700::1111]/hook", []),
        ("https://[2002:808:808::1]/hook", []),
        # A name is only resolved when posting.
        ("https://localhost/hook", []),
        ("http://127.0.0.1:8080/hook", ["127.0.0.1"]),
        ("http://LocalHost/hook", ["localhost"]),
        ("http://localhost/hook", ["LOCALHOST"]),
        ("https://[::1]/hook", ["::1"]),
    ],
)
def test_a_public_or_allowlisted_url_is_accepted(url, allow_hosts):
    check_url(url, allow_hosts)


class FakeDNS:
    """socket.getaddrinfo with some names pointed at given addresses (the
    others resolved for real); each lookup of those names is counted."""

    def __init__(self, real):
        self.real = real
        self.records = {}
        self.lookups = []

    def __call__(self, host, port, *args, **kwargs):
        if host not in self.records:
            return self.real(host, port, *args, **kwargs)
        self.lookups.append(host)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in self.records[host]
        ]


@pytest.fixture
def dns(monkeypatch):
    """A FakeDNS in place of socket.getaddrinfo for the test."""
    fake = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def test_a_name_that_resolves_to_loopback_is_refused_when_posting():
    with pytest.raises(Refused, match="localhost is not a public address"):
        webhook_http.post("https://localhost/hook", b"{}", {}, allow_hosts=[])


def test_a_name_with_any_private_address_is_refused(dns):
    dns.records["hooks.example"] = [PUBLIC_ADDRESS, "10.0.0.7"]
    with pytest.raises(Refused, match="is not a public address"):
        webhook_http.post("https://hooks.example/", b"{}", {}, allow_hosts=[])


def test_the_connection_goes_to_the_checked_address_without_a_second_lookup(
    dns, monkeypatch
):
    dns.records["hooks.example"] = [PUBLIC_ADDRESS]
    connections = []

    def create_connection(address, timeout):
        connections.append((address, timeout))
        raise ConnectionRefusedError  # no network in the tests

    monkeypatch.setattr(socket, "create_connection", create_connection)
    with pytest.raises(ConnectionRefusedError):
        webhook_http.post("https://hooks.example/", b"{}", {}, [], timeout=3)
    assert dns.lookups == ["hooks.example"]
    assert connections == [((PUBLIC_ADDRESS, 443), 3)]


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps each request it gets and
    answers ``answer`` (status, headers)."""

    def __init__(self, tls_context=None):
        self.requests = []
        self.answer = (204, {})
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                receiver.requests.append(
                    (self.path, self.headers, self.rfile.read(length))
                )
                status, headers = receiver.answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(
                self.server.socket, server_side=True
            )
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver():
    """A Receiver in plain HTTP."""
    server = Receiver()
    yield server
    server.close()


def test_an_allowlisted_host_gets_the_exact_body_and_headers(receiver):
    body = b'{"event": "file.uploaded", "id": 7}'
    headers = {"Content-Type": "application/json", "X-Lockbox-Signature": "sha256=ab"}
    url = f"http://127.0.0.1:{receiver.port}/hooks/in?team=1"

    assert webhook_http.post(url, body, headers, LOCAL) == 204

    [(path, received, received_body)] = receiver.requests
    assert path == "/hooks/in?team=1"
    assert received_body == body
    assert received["Host"] == f"127.0.0.1:{receiver.port}"
    assert received["User-Agent"] == "Lockbox-Webhooks"
    assert received["Content-Type"] == "application/json"
    assert received["X-Lockbox-Signature"] == "sha256=ab"
    assert received["Content-Length"] == str(len(body))


def test_a_user_agent_given_is_kept(receiver):
    url = f"http://127.0.0.1:{receiver.port}/"
    webhook_http.post(url, b"{}", {"user-agent": "Team hooks"}, LOCAL)
    [(_, received, _)] = receiver.requests
    assert received.get_all("User-Agent") == ["Team hooks"]


def test_a_redirect_is_returned_not_followed(receiver):
    receiver.answer = (302, {"Location": f"http://127.0.0.1:{receiver.port}/next"})
    url = f"http://127.0.0.1:{receiver.port}/hook"
    assert webhook_http.post(url, b"{}", {}, LOCAL) == 302
    assert [path for path, _, _ in receiver.requests] == ["/hook"]


def test_an_allowlisted_name_is_resolved_once_and_sent_as_host(receiver, dns):
    dns.records["hooks.test"] = ["127.0.0.1"]
    url = f"http://hooks.test:{receiver.port}/"
    assert webhook_http.post(url, b"{}", {}, ["hooks.test"]) == 204
    assert dns.lookups == ["hooks.test"]
    [(_, received, _)] = receiver.requests
    assert received["Host"] == f"hooks.test:{receiver.port}"


def test_a_server_that_never_answers_times_out():
    # Connections wait in the listening socket's backlog, never accepted.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            webhook_http.post(url, b"{}", {}, LOCAL, timeout=0.5)
        assert time.monotonic() - started < 2


def test_a_server_that_trickles_its_answer_is_cut_off_at_twice_the_timeout():
    """A byte every 0.3 s never waits out a 0.5 s timeout on any one read;
    the whole attempt still ends after about 1 s."""
    with socket.create_server(("127.0.0.1", 0)) as trickler:
        stop = threading.Event()

        def answer_slowly():
            connection, _ = trickler.accept()
            with connection:
                connection.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
                    if stop.wait(0.3):
                        return
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:
                        return

        thread = threading.Thread(target=answer_slowly, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{trickler.getsockname()[1]}/"
        started = time.monotonic()
        with pytest.raises((OSError, http.client.HTTPException)):
            webhook_http.post(url, b"{}", {}, LOCAL, timeout=0.5)
        assert time.monotonic() - started < 3
        stop.set()
        thread.join(5)


@pytest.mark.parametrize(
    "address",
    ["64:ff9b:1::a9fe:a9fe", "::ffff:0:a9fe:a9fe", "fec0::1", "5f00::1"],
)
def test_ipv6_ranges_that_can_reach_a_private_network_are_not_public(address):
    assert not webhook_http.is_public(ipaddress.ip_address(address))


def test_a_port_nobody_listens_on_is_a_network_error():
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # the port is taken, but not listened on
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/"
        with pytest.raises(ConnectionRefusedError):
            webhook_http.post(url, b"{}", {}, LOCAL, timeout=2)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for the name hooks.test alone."""
    return self_signed(tmp_path_factory.mktemp("tls"), "hooks.test")


@pytest.fixture
def tls_receiver(certificate, dns):
    """A Receiver in TLS for hooks.test, which resolves to 127.0.0.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    dns.records["hooks.test"] = ["127.0.0.1"]
    server = Receiver(context)
    yield server
    server.close()


def test_https_verifies_the_certificate_and_sends_the_host(
    tls_receiver, certificate, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust it
    url = f"https://hooks.test:{tls_receiver.port}/hook"
    assert webhook_http.post(url, b"{}", {}, ["hooks.test"]) == 204
    [(_, received, _)] = tls_receiver.requests
    assert received["Host"] == f"hooks.test:{tls_receiver.port}"


def test_https_refuses_a_certificate_nobody_trusts(tls_receiver, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    url = f"https://hooks.test:{tls_receiver.port}/hook"
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed"):
        webhook_http.post(url, b"{}", {}, ["hooks.test"])
    assert tls_receiver.requests == []


def test_https_refuses_a_certificate_for_another_name(
    tls_receiver, certificate, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    url = f"https://127.0.0.1:{tls_receiver.port}/hook"
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        webhook_http.post(url, b"{}", {}, LOCAL)
    assert tls_receiver.requests == []
