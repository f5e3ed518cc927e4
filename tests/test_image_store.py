"""ImageStore on the local disk: small images written on the event loop, large ones by
obstore, both read back the same way and never seen half written."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from imagegate.storage.store import INLINE_PUT, ImageStore, storage_url_for_dir, write_file


def _leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if "#" in p.name]


@pytest.mark.parametrize("size", [10, INLINE_PUT, INLINE_PUT + 1, 3 * 1024 * 1024])
async def test_small_and_large_puts_read_back_whole(tmp_path: Path, size: int) -> None:
    store = ImageStore(storage_url_for_dir(tmp_path))
    data = os.urandom(size)
    await store.put("gpt-image/new-dir/t_0.png", data)  # a directory not there yet
    assert await store.get("gpt-image/new-dir/t_0.png") == data
    assert await store.size("gpt-image/new-dir/t_0.png") == size
    assert (tmp_path / "gpt-image/new-dir/t_0.png").read_bytes() == data
    assert _leftovers(tmp_path) == []


async def test_writers_racing_on_one_key_all_succeed(tmp_path: Path) -> None:
    """A task whose lease was lost can be run twice at once: every write lands whole."""
    path = tmp_path / "dalle/t_0.png"
    images = [os.urandom(50_000) for _ in range(32)]
    await asyncio.gather(*(asyncio.to_thread(write_file, path, d) for d in images))
    assert path.read_bytes() in images
    assert _leftovers(tmp_path) == []


async def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    store = ImageStore(storage_url_for_dir(tmp_path))
    (tmp_path / "dalle/t_0.png").mkdir(parents=True)  # the rename cannot replace a directory
    with pytest.raises(OSError):
        await store.put("dalle/t_0.png", b"x" * 100)
    assert _leftovers(tmp_path) == []
    assert await store.get("dalle/t_0.png") is None


async def test_other_stores_take_every_size_through_obstore() -> None:
    store = ImageStore("memory://")
    assert store.root is None
    await store.put("dalle/t_0.png", b"small")
    assert await store.get("dalle/t_0.png") == b"small"
