"""Idempotency-Key: a repeated request within 24 h returns the original task, uncharged."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from imagegate.core.errors import BadRequest, Conflict
from imagegate.core.text import shown
from imagegate.db.engine import Sessions
from imagegate.db.models import Task

WINDOW = 24 * 3600.0
MAX_KEY = 200


@dataclass(frozen=True, slots=True)
class Replay:
    task_id: str
    trace_id: str
    mode: str  # sync | async


class Idempotency:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @staticmethod
    def check_key(key: str) -> str:
        if not key or len(key) > MAX_KEY or not key.isprintable():
            raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY} printable characters")
        return key

    @staticmethod
    def hash(body: dict[str, Any]) -> str:
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()

    @staticmethod
    def is_conflict(error: Exception) -> bool:
        return isinstance(error, IntegrityError)

    async def find(self, credential_id: str, key: str, body: dict[str, Any]) -> Replay | None:
        """The original task for this key, or None when the key is new (or expired)."""
        async with self.sessions.begin() as session:
            task = (await session.execute(select(Task).where(
                Task.credential_id == credential_id, Task.idempotency_key == key
            ))).scalar_one_or_none()
            if task is None:
                return None
            if task.created_at < time.time() - WINDOW:
                await session.execute(update(Task).where(Task.id == task.id)
                                      .values(idempotency_key=None))
                return None
            if task.request_hash != self.hash(body):
                raise Conflict(
                    f"Idempotency-Key {shown(key)} was already used with a different request body "
                    f"(task {task.id}); use a new key for a new request"
                )
            return Replay(task_id=task.id, trace_id=task.trace_id, mode=task.mode)

    async def wait(self, task_id: str, wait: float) -> Task | None:
        deadline = time.monotonic() + wait
        delay = 0.05
        while True:
            async with self.sessions() as session:
                task = await session.get(Task, task_id)
            if task is None or task.status in ("succeeded", "failed"):
                return task
            if time.monotonic() >= deadline:
                return task
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
