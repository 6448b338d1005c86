"""Send one webhook: a POST to a URL a user chose, to nowhere else.

The URL comes from a user, but the request leaves from Lockbox's server, which
can reach what the user cannot: the database, the cloud's metadata service
(169.254.169.254, with its credentials), admin ports on localhost and the
private network. So a webhook goes only to public addresses (server-side
request forgery). Checking the URL when it is saved is not enough: a name can
resolve to a public address then and to 127.0.0.1 a second later (DNS
rebinding). The host is therefore resolved once, right before connecting, every
address it resolves to is checked, and the connection goes to the checked
address itself, never through a second lookup. Redirects are not followed (a
302 could send the request anywhere); the status is the sender's to read.

Hosts in an allowlist (a test receiver on 127.0.0.1, say) skip the address
check and may use plain http; everything else is https, with the certificate
and the host name verified.

Only the standard library, through its public API: http.client lets a
connection decide how it connects, which is all this needs.
"""

import http.client
import ipaddress
import socket
import ssl
import threading
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

USER_AGENT = "Lockbox-Webhooks"
# Of an answer, only the status counts: this much of its body is read, then dropped.
RESPONSE_LIMIT = 64 * 1024
# IPv6 prefixes whose last 32 bits are an IPv4 address the packet may end up
# at: NAT64's well-known prefix (RFC 6052) and the deprecated IPv4-compatible
# addresses. ipaddress counts both as global, whatever the IPv4 address.
IPV4_IN_LAST_32_BITS = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # SIIT-translated (RFC 6052)
    ipaddress.IPv6Network("::/96"),
)
# Never public whatever Python's table says: site-local (deprecated, still
# routed on some networks) and the segment-routing SIDs of RFC 9602.
NOT_PUBLIC = (ipaddress.IPv6Network("fec0::/10"), ipaddress.IPv6Network("5f00::/16"))


class Refused(Exception):
    """A webhook URL Lockbox will not send to (the message says why, for the owner)."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and may be delivered to:
    IPv4-mapped, 6to4, Teredo (server and client), NAT64, IPv4-compatible."""
    carried = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if any(address in prefix for prefix in IPV4_IN_LAST_32_BITS):
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return [ipv4 for ipv4 in carried if ipv4 is not None]


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is on the public internet: global, not multicast,
    and (IPv6) not carrying an IPv4 address that is not."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in NOT_PUBLIC):
            return False
        return all(is_public(ipv4) for ipv4 in embedded_ipv4(address))
    return True


def is_allowed(host: str, allow_hosts: Collection[str]) -> bool:
    """Whether ``host`` (a URL's hostname: lower case, IPv6 without brackets)
    is in the allowlist, whatever the case it was written in."""
    return host in {allowed.lower() for allowed in allow_hosts}


def shown_part(url: str) -> str:
    """What may be shown or kept of a webhook's address beyond its owner's
    eyes: its scheme and host. Receivers (Slack, Discord...) carry their key
    in the path or the query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}/…"


def check_url(url: str, allow_hosts: Collection[str]) -> None:
    """Raise Refused for a URL that is not https://host[:port]/path (http only
    for an allowlisted host), has credentials in it, or whose literal IP is not
    public (unless allowlisted). No DNS here (used when a webhook is saved)."""
    # urlsplit quietly drops tabs and newlines; a URL is refused for them instead.
    if not url.isprintable() or any(char.isspace() for char in url):
        raise Refused("The URL has spaces or control characters in it")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:  # brackets that do not close, a port not a number
        raise Refused(f"The URL is not valid: {error}") from None
    if port == 0:
        raise Refused("The URL's port must be from 1 to 65535")
    host = parts.hostname
    allowed = host is not None and is_allowed(host, allow_hosts)
    if parts.scheme != "https" and not (parts.scheme == "http" and allowed):
        raise Refused("Webhooks are sent only to https:// URLs")
    if not host:
        raise Refused("The URL has no host")
    if "@" in parts.netloc:
        raise Refused("The URL must not have a user name or password in it")
    if not (parts.path + parts.query).isascii():
        raise Refused("The URL's path and query must be ASCII (percent-encoded)")
    if allowed:
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: its addresses are checked when it is resolved
    if not is_public(address):
        raise Refused(f"{host} is not a public address")


def resolve(host: str, port: int, check: bool) -> tuple[str, int]:
    """The address to connect to for ``host``: the first it resolves to, once
    every address it resolves to is known to be public (when ``check``)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [str(sockaddr[0]) for *_, sockaddr in found]
    if check:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address)):
                # Which address is not said: the owner learns nothing of the
                # server's network from a refusal.
                raise Refused(f"{host} is not a public address")
    return addresses[0], port


class CheckedConnection(http.client.HTTPConnection):
    """An HTTP connection that resolves its host once, checks the addresses,
    and connects to the address it checked (no second lookup to rebind)."""

    def __init__(
        self, host: str, port: int | None, timeout: float, *, check: bool
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.check = check

    def connect(self) -> None:
        """Connect to the checked address (called by http.client when needed)."""
        address = resolve(self.host, self.port, self.check)
        self.sock = socket.create_connection(address, self.timeout)


class CheckedTLSConnection(CheckedConnection):
    """A CheckedConnection in TLS, certificate and host name verified."""

    default_port = 443  # so the Host header leaves out :443, as it leaves out :80

    def connect(self) -> None:
        """Connect to the checked address, then verify that it is the host."""
        super().connect()
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    allow_hosts: Collection[str],
    timeout: float = 10.0,
) -> int:
    """POST body to url; the response's status code (the body is read up to
    64 KiB and dropped). Redirects are NOT followed (a 3xx is just returned).
    Raises Refused per check_url and when the host resolves (socket.getaddrinfo)
    to any address that is not public, checked right before connecting and
    connecting only to the checked address (no second DNS lookup: no DNS
    rebinding). Network errors raise OSError (including ssl.SSLError,
    socket.timeout) or http.client.HTTPException."""
    check_url(url, allow_hosts)
    parts = urlsplit(url)
    host = parts.hostname
    assert host is not None  # check_url refuses a URL without one
    kind = CheckedTLSConnection if parts.scheme == "https" else CheckedConnection
    check = not is_allowed(host, allow_hosts)
    connection = kind(host, parts.port, timeout, check=check)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sent = dict(headers)
    if not any(name.lower() == "user-agent" for name in sent):
        sent["User-Agent"] = USER_AGENT
    # ``timeout`` bounds each wait; the whole attempt gets twice that, after
    # which the socket is shut down under whatever read is waiting (a
    # receiver that trickles its answer a byte at a time).
    deadline = threading.Timer(2 * timeout, _shut, args=(connection,))
    deadline.start()
    try:
        connection.request("POST", target, body, sent)
        response = connection.getresponse()
        response.read(RESPONSE_LIMIT)
        return response.status
    finally:
        deadline.cancel()
        connection.close()


def _shut(connection: http.client.HTTPConnection) -> None:
    """End a connection's socket in both directions, from another thread."""
    if connection.sock is not None:
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
