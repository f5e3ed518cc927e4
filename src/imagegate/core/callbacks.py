"""Callback delivery: signed POSTs with retries whose schedule lives in the database.

A finished task with a callback_url gets ``callback_next_at``; dispatchers claim due
deliveries with a short lease, POST, and record the attempt. Restarts lose nothing.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import structlog
from sqlalchemy import select, update

from imagegate import webhooks
from imagegate.core import metrics
from imagegate.core.hosting import ImageHost
from imagegate.core.ssrf import CallbackPolicy, CallbackRefused
from imagegate.db.engine import Sessions
from imagegate.db.models import Credential, Task

log = structlog.get_logger("imagegate.callbacks")
CLAIM_MARGIN = 5.0  # a claimed delivery is another node's to retry after timeout + this


def payload(task: Task) -> dict[str, Any]:
    """The SPEC section 3 callback body, success or failure form."""
    if task.status == "succeeded" and task.response:
        return {"success": True, "task_id": task.id, "trace_id": task.trace_id,
                "data": {"created": task.response.get("created"),
                         "data": task.response.get("data", [])}}
    return {"success": False, "task_id": task.id, "trace_id": task.trace_id,
            "error": {"code": task.error_code or "api_error",
                      "message": task.error_message or "the task failed"}}


class CallbackDispatcher:
    def __init__(self, sessions: Sessions, host: ImageHost,
                 policy: CallbackPolicy, *, timeout: float = 10.0, base_delay: float = 1.0,
                 max_delay: float = 3600.0, max_attempts: int = 12) -> None:
        self.sessions = sessions
        self.host = host
        self.policy = policy
        self.timeout = timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                        headers={"user-agent": "imagegate-callbacks"})

    def delay(self, attempts: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))

    async def claim(self) -> str | None:
        now = time.time()
        async with self.sessions.begin() as session:
            pick = (select(Task.id).where(Task.callback_next_at <= now)
                    .order_by(Task.callback_next_at).limit(1))
            if session.bind.dialect.name == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            row = (await session.execute(
                update(Task).where(Task.id == pick.scalar_subquery(),
                                   Task.callback_next_at <= now)
                .values(callback_next_at=now + self.timeout + CLAIM_MARGIN)
                .returning(Task.id)
            )).first()
        return row[0] if row else None

    async def deliver(self, task_id: str) -> bool:
        """One attempt for a claimed task; True when it was delivered."""
        async with self.sessions() as session:
            task = await session.get(Task, task_id)
            cred = await session.get(Credential, task.credential_id) if task else None
        if task is None or cred is None or not task.callback_url:
            if task is not None:
                async with self.sessions.begin() as session:
                    await session.execute(update(Task).where(Task.id == task_id)
                                          .values(callback_next_at=None))
            return False
        body = orjson.dumps(await self._with_b64(task, payload(task)))
        started = time.time()
        status: int | None = None
        error: str | None = None
        outcome = "failed"
        try:
            status = await self._post(task.callback_url, body, cred.webhook_secret)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except CallbackRefused as e:
            error, outcome = str(e), "refused"
        except httpx.TimeoutException:
            error = f"timed out after {self.timeout:g}s"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:300]
        await self._record(task, {"at": started, "status": status, "error": error,
                                  "duration": round(time.time() - started, 3)})
        outcome = "delivered" if error is None else outcome
        metrics.callbacks_total.labels(outcome).inc()
        log.info("callback_attempt", task_id=task.id, trace_id=task.trace_id, status=status,
                 error=error)
        return error is None

    async def _post(self, url: str, body: bytes, secret: str) -> int:
        """POST to an address we checked ourselves, so DNS cannot change between check and use."""
        host, addresses = await self.policy.resolve(url)
        parts = urlsplit(url)
        ip = addresses[0]
        netloc = f"[{ip}]" if ":" in ip else ip
        if parts.port:
            netloc += f":{parts.port}"
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = parts.netloc.rsplit("@", 1)[-1]
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        response = await self.client.post(target, content=body, headers={
            "content-type": "application/json", "host": host_header,
            webhooks.HEADER: webhooks.sign(secret, body),
        }, extensions=extensions)
        return response.status_code

    async def _with_b64(self, task: Task, body: dict[str, Any]) -> dict[str, Any]:
        """Callbacks for b64_json requests carry the image bytes, read back from storage."""
        if not body["success"] or task.request.get("response_format") != "b64_json":
            return body
        items = await self.host.as_b64(body["data"]["data"])
        return {**body, "data": {**body["data"], "data": items}}

    async def _record(self, task: Task, attempt: dict[str, Any]) -> None:
        state = dict(task.callback or {})
        attempts = [*state.get("attempts", []), attempt]
        delivered = attempt["error"] is None
        if delivered:
            state.update(state="delivered", delivered_at=attempt["at"])
            next_at = None
        elif len(attempts) >= self.max_attempts:
            state.update(state="failed")
            next_at = None
        else:
            state.update(state="retrying")
            attempt["retry_in"] = self.delay(len(attempts))
            next_at = time.time() + attempt["retry_in"]
        state["attempts"] = attempts
        async with self.sessions.begin() as session:
            await session.execute(update(Task).where(Task.id == task.id).values(
                callback=state, callback_next_at=next_at))

    async def aclose(self) -> None:
        await self.client.aclose()
