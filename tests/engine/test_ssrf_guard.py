"""SSRF guard: blocked/allowed tables, pinning, and no traffic to refused targets.

``net_audit`` (from test_http_request) records every ``socket.connect`` and
``socket.getaddrinfo`` of this process through a Python audit hook, so "refused before
connecting" is observed on real sockets, not assumed.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx
import pytest

from athena.engine.netguard import (
    BlockedTarget, ResolvedTarget, blocked_reason, check_url, pinned_transport,
)

from ._engine_helpers import edge, execute, node
from .test_http_request import NetAudit, local_server, net_audit  # noqa: F401 - fixtures

BLOCKED = [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.255.255.254:8080/x", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://LOCALHOST./", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0177.0.0.1/", "'0177.0.0.1' means 127.0.0.1"),  # httpx rejects octal quads
    ("http://0177.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("http://[::ffff:7f00:1]/", "IPv4-mapped"),
    ("http://[::127.0.0.1]/", "IPv4-compatible"),
    ("http://[2002:7f00:1::]/", "6to4"),
    ("http://[2002:a00:1::]/", "6to4"),
    ("http://[64:ff9b::a9fe:a9fe]/", "NAT64"),
    ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
    ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://10.0.0.1/", "RFC 1918"),
    ("http://10.255.255.255/", "RFC 1918"),
    ("http://012.0.0.1/", "'012.0.0.1' means 10.0.0.1"),
    ("http://012.1/", "RFC 1918"),  # octal 10.0.0.1 without the dotted-quad shape
    ("http://172.16.0.1/", "RFC 1918"),
    ("http://172.31.255.255/", "RFC 1918"),
    ("http://192.168.1.1/", "RFC 1918"),
    ("http://[fc00::1]/", "unique local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fec0::1]/", "site-local"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://100.64.0.1/", "CGNAT"),
    ("http://100.127.255.254/", "CGNAT"),
    ("http://192.0.2.1/", "non-public"),
    ("http://198.18.0.1/", "non-public"),
    ("http://1.2.3.4.5/", "not a valid numeric"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://127.0.0.1:70/_", "scheme 'gopher'"),
    ("ftp://example.com/", "scheme 'ftp'"),
    ("dict://127.0.0.1:11211/", "scheme 'dict'"),
    ("http://user@127.0.0.1/", "credentials"),
    ("http://user:pw@example.com/", "credentials"),
    ("http://example.com\\@127.0.0.1/", "backslashes"),
    ("http:///path", "empty host"),
    ("http://127.0.0.1:99999/", "invalid port"),
    ("http://127.0.0.1 /", "whitespace"),
]


def _loopback_names_from_hosts_file() -> list[str]:
    """Names that /etc/hosts maps to a loopback address (resolved locally, no DNS)."""
    names: list[str] = []
    try:
        lines = Path("/etc/hosts").read_text().splitlines()
    except OSError:
        return names
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            if not ipaddress.ip_address(fields[0]).is_loopback:
                continue
        except ValueError:
            continue
        names.extend(name for name in fields[1:] if name not in names)
    return names


HOSTS_NAMES = _loopback_names_from_hosts_file()


@pytest.mark.parametrize(("url", "reason"), BLOCKED)
def test_blocked_targets_are_refused_without_connecting(url: str, reason: str,
                                                        net_audit: NetAudit) -> None:
    with pytest.raises(BlockedTarget) as info:
        check_url(url, [])
    assert reason in str(info.value)
    assert info.value.retryable is False
    assert net_audit.connects == []
    # Numeric spellings never reach the name service; names only hit /etc/hosts entries.
    assert set(net_audit.lookups) <= set(HOSTS_NAMES) | {"localhost"}


@pytest.mark.parametrize("name", HOSTS_NAMES or ["localhost"])
def test_names_from_hosts_file_that_resolve_to_loopback(name: str, net_audit: NetAudit) -> None:
    with pytest.raises(BlockedTarget, match="loopback"):
        check_url(f"http://{name}/", [])
    assert net_audit.connects == []


@pytest.mark.parametrize("url", [url for url, _ in BLOCKED])
def test_blocked_targets_fail_the_node_without_connecting(url: str, net_audit: NetAudit) -> None:
    events, state = execute([node("t", "manual"), node("h", "http_request", url=url)],
                            [edge("t", "h")], services={"settings": {"http_allowlist": []}})
    assert state.entries["h"]["status"] == "error"
    assert "refusing" in state.entries["h"]["error"]
    assert net_audit.connects == []


@pytest.mark.parametrize(("url", "allowlist", "addresses"), [
    ("http://93.184.216.34/", [], ("93.184.216.34",)),
    ("https://93.184.216.34:8443/x?y=1", [], ("93.184.216.34",)),
    ("http://[2606:4700::1111]/", [], ("2606:4700::1111",)),
    ("http://[::ffff:93.184.216.34]/", [], ("::ffff:5db8:d822",)),
    ("http://127.0.0.1:8080/", ["127.0.0.1"], ("127.0.0.1",)),
    ("http://[::ffff:127.0.0.1]/", ["127.0.0.1"], ("::ffff:7f00:1",)),
    ("http://localhost/", ["LOCALHOST"], ("127.0.0.1",)),
    ("http://10.1.2.3/", ["10.0.0.0/8"], ("10.1.2.3",)),
    ("http://[fd00::5]/", ["fd00::/8"], ("fd00::5",)),
    ("http://0x7f.1/", ["127.0.0.0/8"], ("127.0.0.1",)),
])
def test_allowed_targets(url: str, allowlist: list[str], addresses: tuple[str, ...],
                         net_audit: NetAudit) -> None:
    target = check_url(url, allowlist)
    assert target.addresses[: len(addresses)] == addresses
    assert target.ip == addresses[0]
    assert net_audit.connects == []  # only checked, never contacted


@pytest.mark.parametrize(("url", "allowlist"), [
    ("http://127.0.0.1/", ["10.0.0.0/8", "example.com"]),
    ("http://169.254.169.254/", ["169.254.169.253"]),
    ("http://127.0.0.1/", ["localhost"]),  # a name does not allow its address spelled out
])
def test_allowlist_is_exact(url: str, allowlist: list[str]) -> None:
    with pytest.raises(BlockedTarget):
        check_url(url, allowlist)


@pytest.mark.parametrize(("address", "blocked"), [
    ("8.8.8.8", False), ("2001:4860:4860::8888", False), ("100.63.255.255", False),
    ("100.128.0.0", False), ("172.32.0.1", False), ("::ffff:8.8.8.8", False),
    ("100.64.0.0", True), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True),
    ("2001:db8::1", True), ("::ffff:10.0.0.1", True), ("fe80::1%1", True),
])
def test_blocked_reason_edges(address: str, blocked: bool) -> None:
    assert (blocked_reason(ipaddress.ip_address(address)) is not None) is blocked


def test_pinned_transport_connects_to_the_checked_address_only(local_server: str,
                                                              net_audit: NetAudit) -> None:
    """DNS rebinding: the transport never resolves the name; it dials the pinned address."""
    port = int(local_server.rsplit(":", 1)[1])
    target = ResolvedTarget(httpx.URL(f"http://rebind.test:{port}/echo"), "rebind.test", port,
                            ("127.0.0.1",))
    with httpx.Client(transport=pinned_transport(target), trust_env=False) as client:
        echoed = client.get(target.url).json()
        assert echoed["headers"]["host"] == f"rebind.test:{port}"
        with pytest.raises(httpx.ConnectError, match="unchecked target"):
            client.get(f"http://other.test:{port}/echo")
    assert net_audit.connects == [("127.0.0.1", port)]
    assert net_audit.lookups == ["127.0.0.1"]  # numeric, from socket.create_connection


@pytest.mark.parametrize("blocked", ["http://169.254.169.254/", "http://10.0.0.1/",
                                     "http://0xa.1/", "http://[::ffff:10.0.0.1]/", "http://[::1]/"])
def test_redirect_to_private_address_refused_before_connecting(
        local_server: str, blocked: str, net_audit: NetAudit) -> None:
    from urllib.parse import quote

    url = f"{local_server}/to?url={quote(blocked, safe='')}"
    events, state = execute([node("t", "manual"), node("h", "http_request", url=url)],
                            [edge("t", "h")],
                            services={"settings": {"http_allowlist": ["127.0.0.1"]}})
    entry = state.entries["h"]
    assert entry["status"] == "error"
    assert entry["error"].startswith("refusing to connect to ")
    port = int(local_server.rsplit(":", 1)[1])
    assert net_audit.connects == [("127.0.0.1", port)]
