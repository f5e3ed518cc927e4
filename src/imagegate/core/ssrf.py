"""Callback URLs must not reach into the gateway's own network unless the operator allows it."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from imagegate.core.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackRefused(Exception):
    """The callback target is not allowed; the message says why."""


class CallbackPolicy:
    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for entry in allow:
            entry = entry.strip()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def address_allowed(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.networks):
            return True
        return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_private
                                     or ip.is_loopback or ip.is_link_local)

    @staticmethod
    def parse(url: str) -> tuple[str, str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise BadRequest(f"callback_url is not a valid URL: {e}") from None
        if parts.scheme not in ("http", "https"):
            raise BadRequest("callback_url must be an http or https URL")
        if not parts.hostname:
            raise BadRequest("callback_url must have a host")
        if parts.username or parts.password:
            raise BadRequest("callback_url must not carry credentials")
        return parts.scheme, parts.hostname.lower().rstrip("."), port or (
            443 if parts.scheme == "https" else 80)

    async def resolve(self, url: str) -> tuple[str, list[str]]:
        """The host and the addresses to connect to; raises CallbackRefused or BadRequest."""
        _, host, port = self.parse(url)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            if not self.address_allowed(literal):
                raise CallbackRefused(f"callback_url address {literal} is not allowed "
                                      "(private, loopback, link-local or reserved)")
            return host, [str(literal)]
        if host in self.hosts:
            infos = await _getaddrinfo(host, port)
            return host, [str(a) for a in infos]
        infos = await _getaddrinfo(host, port)
        if not infos:
            raise CallbackRefused(f"callback_url host {host} does not resolve")
        bad = [str(a) for a in infos if not self.address_allowed(a)]
        if bad:
            raise CallbackRefused(f"callback_url host {host} resolves to a disallowed "
                                  f"address ({bad[0]})")
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
        raise CallbackRefused(f"callback_url host {host} does not resolve ({e})") from None
    out: list[IPAddress] = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if addr not in out:
            out.append(addr)
    return out
