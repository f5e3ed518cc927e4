"""The callback address policy, and posting pinned to the addresses it checked.

DNS is the one thing replaced here (``CallbackPolicy(resolver=...)``): no name resolves
to several addresses on a test machine. Connections and the receiver are real.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import httpx
import pytest

from imagegate.core.ssrf import CallbackPolicy, CallbackRefused, IPAddress, refusal
from imagegate.core.tasks.callbacks import post_pinned
from tests.support.receiver import CallbackReceiver

REFUSED = [
    "0.0.0.0", "10.1.2.3", "100.64.0.1", "127.0.0.1", "169.254.169.254", "172.16.5.4",
    "172.31.255.255", "192.0.0.9", "192.0.2.1", "192.88.99.1", "192.168.1.1",
    "198.18.0.1", "198.51.100.7", "203.0.113.9", "224.0.0.1", "240.0.0.1",
    "255.255.255.255",
    "::", "::1", "::127.0.0.1", "::8.8.8.8",  # IPv4-compatible, even of a public address
    "::ffff:127.0.0.1", "::ffff:8.8.8.8", "::ffff:0:8.8.8.8",  # mapped and translated
    "2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe::",  # 6to4 of private addresses
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo whose client is 192.0.2.45
    "2001:0:a00:1::f5ff:fffe",  # Teredo whose server is 10.0.0.1
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::c0a8:101",  # NAT64 of private
    "64:ff9b:1::808:808",  # local-use NAT64
    "100::1", "2001:db8::1", "2001:10::1", "3fff::1", "5f00::1",
    "fc00::1", "fd12:3456::1", "fe80::1", "fe80::1%eth0", "fec0::1", "feff::1",
    "ff02::1", "ff0e::1",
]
ALLOWED = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::200e",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, both ends public
]


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize("address", REFUSED)
def test_refused_addresses(address: str) -> None:
    assert refusal(ip(address)) is not None
    assert not CallbackPolicy().address_allowed(ip(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ip(address)) is None
    assert CallbackPolicy().address_allowed(ip(address))


def test_refusal_names_the_embedded_address() -> None:
    assert "127.0.0.1" in (refusal(ip("2002:7f00:1::")) or "")
    assert "10.0.0.1" in (refusal(ip("64:ff9b::a00:1")) or "")


def test_allowlist_covers_only_what_it_says() -> None:
    policy = CallbackPolicy(["127.0.0.0/8", "::/0", "hooks.internal"])
    assert policy.address_allowed(ip("127.0.0.1"))
    assert policy.address_allowed(ip("fec0::1"))
    assert not policy.address_allowed(ip("10.0.0.1"))  # "::/0" is not an IPv4 network
    assert not CallbackPolicy(["127.0.0.0/8"]).address_allowed(ip("2002:7f00:1::"))
    assert not CallbackPolicy(["127.0.0.0/8"]).address_allowed(ip("::ffff:127.0.0.1"))
    assert policy.hosts == {"hooks.internal"}


def dns(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ip(a) for a in table.get(host, [])]
    return resolve


def test_resolved_addresses_are_all_checked() -> None:
    policy = CallbackPolicy(resolver=dns({"rebind.test": ["8.8.8.8", "10.0.0.1"],
                                          "public.test": ["8.8.8.8", "2606:4700::1111"]}))

    async def go() -> None:
        with pytest.raises(CallbackRefused, match="10.0.0.1"):
            await policy.resolve("http://rebind.test/hook")
        with pytest.raises(CallbackRefused, match="does not resolve"):
            await policy.resolve("http://nowhere.test/hook")
        assert await policy.resolve("https://public.test/x") == (
            "public.test", ["8.8.8.8", "2606:4700::1111"])

    asyncio.run(go())


@pytest.fixture()
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as r:
        yield r


def test_post_tries_each_checked_address(receiver: CallbackReceiver) -> None:
    """The first address refuses the connection, the second is the receiver; the request
    goes to the addresses, never the name (which real DNS could not resolve at all)."""
    names = {"hooks.test": ["127.0.0.2", "127.0.0.1"], "dead.test": ["127.0.0.2", "127.0.0.3"],
             "private.test": ["127.0.0.1"]}
    allowed = CallbackPolicy(["127.0.0.0/8"], resolver=dns(names))
    url = f"http://hooks.test:{receiver.port}/hook?q=1"

    async def go() -> None:
        async with httpx.AsyncClient() as client:
            assert await post_pinned(client, allowed, url, b"{}", {}, 5) == 200
            with pytest.raises(httpx.ConnectError):
                await post_pinned(client, allowed, f"http://dead.test:{receiver.port}/",
                                  b"{}", {}, 5)
            with pytest.raises(CallbackRefused):  # no allowlist: private after DNS
                await post_pinned(client, CallbackPolicy(resolver=dns(names)),
                                  f"http://private.test:{receiver.port}/", b"{}", {}, 5)

    asyncio.run(go())
    (got,) = receiver.received
    assert got.path == "/hook?q=1"
    assert got.headers["host"] == f"hooks.test:{receiver.port}"
