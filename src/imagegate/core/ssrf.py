"""Callback URLs and edits' image URLs must not reach the gateway's own network unless allowed.

The check is an explicit deny list rather than ``ipaddress``'s ``is_global`` alone: what
``is_global`` means has changed between Python releases, and it says nothing about IPv6
forms that carry an IPv4 address (6to4, Teredo, NAT64, mapped, compatible), which a
network may route straight to that IPv4 address. ``is_global`` is still required on top.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from imagegate.core.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

_DENY_V4 = [ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)]
_DENY_V6 = [ipaddress.IPv6Network(n) for n in (
    "::/96",  # unspecified, loopback and IPv4-compatible
    "::ffff:0:0/96", "::ffff:0:0:0/96",  # IPv4-mapped and IPv4-translated
    "64:ff9b:1::/48",  # local-use NAT64
    "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_TEREDO = ipaddress.IPv6Network("2001::/32")


class CallbackRefused(Exception):
    """The callback target is not allowed; the message says why."""


def _v4_refusal(ip: ipaddress.IPv4Address) -> str | None:
    if any(ip in net for net in _DENY_V4) or not ip.is_global:
        return "private, loopback, link-local, multicast or reserved"
    return None


def _embedded(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address tunnels or translates to."""
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip in _TEREDO and ip.teredo is not None:
        return list(ip.teredo)
    if ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` may not receive callbacks (no allowlist applied), or None when it may."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_refusal(ip)
    for inner in _embedded(ip):
        why = _v4_refusal(inner)
        if why:
            return f"embeds {inner}: {why}"
    if ip in _TEREDO:
        return None  # both ends of the tunnel passed above
    if any(ip in net for net in _DENY_V6) or ip.is_site_local or not (
            ip.is_global or _embedded(ip)):
        return ("private, loopback, link-local, site-local, multicast, reserved or "
                "IPv4-mapped")
    return None


class CallbackPolicy:
    def __init__(self, allow: Iterable[str] = (), resolver: Resolver | None = None) -> None:
        """``resolver`` replaces DNS (tests give names several addresses this way)."""
        self.networks: list[Network] = []
        self.hosts: set[str] = set()
        self.resolver: Resolver = resolver or _getaddrinfo
        for entry in allow:
            entry = entry.strip()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def refusal(self, ip: IPAddress) -> str | None:
        if any(ip.version == net.version and ip in net for net in self.networks):
            return None
        return refusal(ip)

    def address_allowed(self, ip: IPAddress) -> bool:
        return self.refusal(ip) is None

    @staticmethod
    def parse(url: str, what: str = "callback_url") -> tuple[str, str, int]:
        """``what`` names the URL in messages (image URLs of edits go through here too)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise BadRequest(f"{what} is not a valid URL: {e}") from None
        if parts.scheme not in ("http", "https"):
            raise BadRequest(f"{what} must be an http or https URL")
        if not parts.hostname:
            raise BadRequest(f"{what} must have a host")
        if parts.username or parts.password:
            raise BadRequest(f"{what} must not carry credentials")
        return parts.scheme, parts.hostname.lower().rstrip("."), port or (
            443 if parts.scheme == "https" else 80)

    async def resolve(self, url: str, what: str = "callback_url") -> tuple[str, list[str]]:
        """The host and the addresses to connect to, every one of them checked; raises
        CallbackRefused or BadRequest. Callers connect to these, never to the name, so a
        DNS answer that changes after the check cannot redirect the request."""
        _, host, port = self.parse(url, what)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            why = self.refusal(literal)
            if why:
                raise CallbackRefused(f"{what} address {literal} is not allowed ({why})")
            return host, [str(literal)]
        try:
            infos = await self.resolver(host, port)
        except CallbackRefused as e:
            raise CallbackRefused(f"{what} {e}") from None
        if not infos:
            raise CallbackRefused(f"{what} host {host} does not resolve")
        if host in self.hosts:
            return host, [str(a) for a in infos]
        for address in infos:
            why = self.refusal(address)
            if why:
                raise CallbackRefused(f"{what} host {host} resolves to an address that "
                                      f"is not allowed ({address}: {why})")
        return host, [str(a) for a in infos]

    async def check_submission(self, url: str) -> None:
        try:
            await self.resolve(url)
        except CallbackRefused as e:
            raise BadRequest(str(e)) from None


async def _getaddrinfo(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=5)
    except (OSError, TimeoutError) as e:
        raise CallbackRefused(f"host {host} does not resolve ({e})") from None
    out: list[IPAddress] = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if addr not in out:
            out.append(addr)
    return out
