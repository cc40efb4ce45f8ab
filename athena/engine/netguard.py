"""SSRF guard for node types that make outbound HTTP requests.

1. :func:`check_url` parses the URL once with ``httpx.URL`` -- the very parser the HTTP
   client uses, so the guard and the client cannot disagree about the host -- and refuses
   non-http(s) schemes, userinfo (``http://user@host``), empty hosts and bad ports.
2. The host is resolved to *all* its addresses without any name-service lookup for
   numeric spellings: IP literals are parsed with :mod:`ipaddress`, and legacy numeric
   forms (``127.1``, ``0x7f.1``, ``2130706433``) are normalised with ``inet_aton`` as
   libc would (httpx itself rejects ``0177.0.0.1``).  Names use ``socket.getaddrinfo``.
3. If ANY address is non-public (loopback, RFC 1918, ULA, link-local, cloud metadata,
   CGNAT, multicast, unspecified, reserved, or an IPv6 form embedding one of those:
   IPv4-mapped/compatible, 6to4, Teredo, NAT64) the target is refused with
   :class:`BlockedTarget` -- unless the host name, or that address, matches the allowlist
   (exact host name, IP, or CIDR).
4. DNS rebinding: the returned :class:`ResolvedTarget` pins the checked addresses.
   :func:`pinned_transport` gives an httpx transport whose network backend never
   resolves names: it connects only to those addresses (in order, as fallbacks) and
   refuses any other host/port.  The URL keeps its host name, so the ``Host`` header,
   TLS SNI and certificate verification all use the real name while the TCP connection
   goes to the address that was checked.  A second DNS answer is never consulted.
   Each redirect hop is a new :func:`check_url` and a new pinned transport.
"""
from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

import httpcore
import httpx

from athena.engine.errors import NodeError

__all__ = ["BlockedTarget", "ResolvedTarget", "blocked_reason", "check_url", "pinned_transport"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*$", re.I)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CORE_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
                httpcore.UnsupportedProtocol, httpcore.ProxyError, httpcore.ConnectionNotAvailable)
_ssl_context = functools.cache(httpx.create_ssl_context)  # ~90 ms to build: share one

_net = ipaddress.ip_network
# Checked in order: the first match names the reason.
_BLOCKED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_net("169.254.169.254/32"), "cloud metadata address"),
    (_net("169.254.170.2/32"), "cloud metadata address"),
    (_net("fd00:ec2::254/128"), "cloud metadata address"),
    (_net("0.0.0.0/8"), "unspecified / 'this network' address"),
    (_net("127.0.0.0/8"), "loopback address"),
    (_net("10.0.0.0/8"), "private address (RFC 1918)"),
    (_net("172.16.0.0/12"), "private address (RFC 1918)"),
    (_net("192.168.0.0/16"), "private address (RFC 1918)"),
    (_net("100.64.0.0/10"), "shared address space (CGNAT, RFC 6598)"),
    (_net("169.254.0.0/16"), "link-local address"),
    (_net("224.0.0.0/4"), "multicast address"),
    (_net("255.255.255.255/32"), "broadcast address"),
    (_net("240.0.0.0/4"), "reserved address"),
    (_net("::/128"), "unspecified address"),
    (_net("::1/128"), "loopback address"),
    (_net("fc00::/7"), "private address (unique local, fc00::/7)"),
    (_net("fe80::/10"), "link-local address"),
    (_net("fec0::/10"), "site-local address (deprecated)"),
    (_net("ff00::/8"), "multicast address"),
)


class BlockedTarget(NodeError):
    """The URL points at a non-public address (or is not an allowed http(s) URL)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A checked URL and the addresses the request may connect to (pinned)."""

    url: httpx.URL
    host: str
    port: int
    addresses: tuple[str, ...]
    allowlisted: bool = False

    @property
    def ip(self) -> str:
        """The pinned address tried first."""
        return self.addresses[0]


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip.teredo is not None:
        server, client = ip.teredo
        return "Teredo", client if blocked_reason(client) else server
    value = int(ip)
    if value >> 32 == 0 and value > 1:
        return "IPv4-compatible", ipaddress.IPv4Address(value)
    if value >> 32 == 0xFFFF0000:  # ::ffff:0:a.b.c.d (SIIT IPv4-translated)
        return "IPv4-translated", ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _net("64:ff9b::/96") or ip in _net("64:ff9b:1::/48"):
        return "NAT64", ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be contacted, or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        embedded = _embedded_v4(ip)
        if embedded is not None:
            kind, v4 = embedded
            inner = blocked_reason(v4)
            if inner:
                return f"{kind} IPv6 address embedding {v4}: {inner}"
            if kind == "IPv4-mapped":
                return None
    for network, reason in _BLOCKED_NETWORKS:
        if ip.version == network.version and ip in network:
            return reason
    if ip.is_multicast:
        return "multicast address"
    if ip.is_reserved or ip.is_private or not ip.is_global:
        return "reserved / non-public address"
    return None


def _allow_rules(allowlist: Iterable[str]) -> tuple[set[str], list[Any]]:
    hosts: set[str] = set()
    networks: list[Any] = []
    for entry in allowlist or ():
        text = str(entry).strip().lower().rstrip(".")
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
        except ValueError:
            hosts.add(text)
    return hosts, networks


def _address_allowed(ip: IPAddress, networks: list[Any]) -> bool:
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    return any(c.version == n.version and c in n for c in candidates for n in networks)


def _resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses of ``host``; numeric spellings never reach the name service."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:  # legacy numeric forms (127.1, 0x7f.1, 0177.0.0.1, 2130706433), like libc
            return [ipaddress.IPv4Address(socket.inet_aton(host))]
        except OSError:
            raise BlockedTarget(f"refusing host '{host}': not a valid numeric IPv4 address") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise NodeError(f"could not resolve host '{host}': {exc}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise NodeError(f"could not resolve host '{host}': no addresses")
    return addresses


def _spelled(text: str) -> str:
    """For a URL httpx rejects: name the address a numeric host spelling stands for."""
    try:
        host = (urlsplit(text).hostname or "").rstrip(".")
        if _NUMERIC_HOST.match(host):
            return f"; '{host}' means {ipaddress.IPv4Address(socket.inet_aton(host))}"
    except (ValueError, OSError):
        pass
    return ""


def check_url(url: str | httpx.URL, allowlist: Iterable[str] = ()) -> ResolvedTarget:
    """Parse, resolve and vet ``url``; raise :class:`BlockedTarget` when refused."""
    text = str(url)
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\\" for ch in text):
        raise BlockedTarget(f"refusing URL {text!r}: whitespace, control characters and "
                            "backslashes are not allowed")
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise BlockedTarget(f"refusing URL {text!r}: invalid URL ({exc}){_spelled(text)}") from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise BlockedTarget(f"refusing URL {text!r}: scheme '{parsed.scheme or '(none)'}' "
                            "is not allowed (only http and https)")
    if parsed.userinfo:
        raise BlockedTarget(f"refusing URL {text!r}: credentials in the URL (user@host) "
                            "are not allowed")
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        raise BlockedTarget(f"refusing URL {text!r}: empty host")
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    if not 0 < port < 65536:
        raise BlockedTarget(f"refusing URL {text!r}: invalid port {port}")
    allowed_hosts, allowed_networks = _allow_rules(allowlist)
    host_allowed = host in allowed_hosts
    addresses = _resolve(host, port)
    if not host_allowed:
        for ip in addresses:
            reason = blocked_reason(ip)
            if reason and not _address_allowed(ip, allowed_networks):
                shown = host if host == str(ip) else f"{host} ({ip})"
                raise BlockedTarget(f"refusing to connect to {shown}: {reason}; "
                                    "add it to the HTTP allowlist to permit it")
    return ResolvedTarget(parsed, host, port, tuple(str(ip) for ip in addresses), host_allowed)


class _PinnedBackend(httpcore.SyncBackend):
    """Connects only to the checked addresses of one target; never resolves names."""

    def __init__(self, target: ResolvedTarget, dial: Callable[..., Any] | None = None) -> None:
        self.target, self.dial = target, dial  # dial: connect_tcp for one checked address

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        if host.lower().rstrip(".").strip("[]") != self.target.host or port != self.target.port:
            raise httpcore.ConnectError(f"refusing to connect to unchecked target {host}:{port}")
        last: Exception | None = None
        dial = self.dial or super().connect_tcp
        for address in self.target.addresses:
            try:
                return dial(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:  # try the next checked address
                last = exc
        raise last or httpcore.ConnectError(f"no address to connect to for {host}")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")


def _to_httpx(exc: Exception, request: httpx.Request) -> Exception:
    cls = getattr(httpx, type(exc).__name__, None)  # httpx mirrors httpcore's exception names
    if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
        cls = httpx.TransportError
    return cls(str(exc) or type(exc).__name__, request=request)


class _Stream(httpx.SyncByteStream):
    def __init__(self, stream: Any, request: httpx.Request) -> None:
        self._stream, self._request = stream, request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except _CORE_ERRORS as exc:
            raise _to_httpx(exc, self._request) from exc

    def close(self) -> None:
        if hasattr(self._stream, "close"):
            self._stream.close()


class _PinnedTransport(httpx.BaseTransport):
    def __init__(self, target: ResolvedTarget, dial: Callable[..., Any] | None = None) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(), max_connections=2, retries=0,
            network_backend=_PinnedBackend(target, dial))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream, extensions=request.extensions)
        try:
            resp = self._pool.handle_request(core_request)
        except _CORE_ERRORS as exc:
            raise _to_httpx(exc, request) from exc
        return httpx.Response(status_code=resp.status, headers=resp.headers,
                              stream=_Stream(resp.stream, request), extensions=resp.extensions)

    def close(self) -> None:
        self._pool.close()


def pinned_transport(target: ResolvedTarget,
                     dial: Callable[..., Any] | None = None) -> httpx.BaseTransport:
    """An httpx transport that connects only to ``target``'s checked addresses (via ``dial``)."""
    return _PinnedTransport(target, dial)
