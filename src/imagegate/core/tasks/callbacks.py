"""Callback delivery: signed POSTs with retries whose schedule lives in the database.

A finished task with a callback_url gets ``callback_next_at``; dispatchers claim due
deliveries by moving it past the time one attempt may take, POST, and record the attempt.
Restarts lose nothing.

The claimed ``callback_next_at`` value doubles as the claim's token: nobody else can claim
the delivery before it passes, and each attempt is bounded to end before it does, so one
delivery is never posted twice at once. The outcome is written only while the stored
value still equals the token; the attempt itself is always appended to the history read
afresh under a row lock, so no attempt overwrites another.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate import webhooks
from imagegate.core import metrics
from imagegate.core.errors import BadRequest
from imagegate.core.generation import OPENAI_FIELDS
from imagegate.core.hosting import ImageHost
from imagegate.core.ssrf import CallbackPolicy, CallbackRefused
from imagegate.db.engine import Sessions
from imagegate.db.models import Credential, Task

log = structlog.get_logger("imagegate.callbacks")
CLAIM_MARGIN = 5.0  # a claim outlives the attempt it covers by this (clock skew, slow DB)


def payload(task: Task) -> dict[str, Any]:
    """The SPEC section 3 callback body, success or failure form."""
    if task.status == "succeeded" and task.response:
        inner = {"created": task.response.get("created"), "data": task.response.get("data", [])}
        inner.update({f: task.response[f] for f in OPENAI_FIELDS if f in task.response})
        return {"success": True, "task_id": task.id, "trace_id": task.trace_id, "data": inner}
    return {"success": False, "task_id": task.id, "trace_id": task.trace_id,
            "error": {"code": task.error_code or "api_error",
                      "message": task.error_message or "the task failed"}}


async def post_pinned(client: httpx.AsyncClient, policy: CallbackPolicy, url: str,
                      body: bytes, headers: dict[str, str], seconds: float) -> int:
    """POST to the addresses the policy checked, in turn, never to the name, so DNS cannot
    change between check and use. Only a failure to connect moves on to the next address:
    once a receiver has the request, its answer (or silence) is the attempt's outcome.

    Everything, resolution included, ends within ``seconds`` (TimeoutError): httpx's own
    timeouts are per phase, and a receiver trickling bytes would never trip them."""
    async with asyncio.timeout(seconds):
        host, addresses = await policy.resolve(url)
        parts = urlsplit(url)
        headers = {**headers, "host": parts.netloc.rsplit("@", 1)[-1]}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        phases = httpx.Timeout(seconds, connect=seconds / len(addresses))
        failure: httpx.TransportError | None = None
        for ip in addresses:
            netloc = f"[{ip}]" if ":" in ip else ip
            if parts.port:
                netloc += f":{parts.port}"
            target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            try:
                response = await client.post(target, content=body, headers=headers,
                                             extensions=extensions, timeout=phases)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                failure = e
                continue
            return response.status_code
        assert failure is not None
        raise failure


async def _locked_next_at(session: AsyncSession, task_id: str) -> tuple[Any, float | None]:
    """The delivery state and ``callback_next_at``, locked for this transaction (SQLite's
    write transactions are exclusive already)."""
    row = (await session.execute(
        select(Task.callback, Task.callback_next_at).where(Task.id == task_id)
        .with_for_update())).first()
    return (row[0], row[1]) if row else (None, None)


class CallbackDispatcher:
    def __init__(self, sessions: Sessions, host: ImageHost,
                 policy: CallbackPolicy, *, timeout: float = 10.0, base_delay: float = 1.0,
                 max_delay: float = 3600.0, max_attempts: int = 16) -> None:
        self.sessions = sessions
        self.host = host
        self.policy = policy
        self.timeout = timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        # no kept-alive connections: they are keyed by IP, and two callback hosts on one
        # IP must not share a TLS session made for the other's name
        self.client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"user-agent": "imagegate-callbacks"})
        self._claims: dict[str, float] = {}  # task id -> token of our claim

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt: base, doubling, capped."""
        doublings = min(max(0, attempts - 1), 64)  # past 2**64 only the cap is left
        return min(self.max_delay, self.base_delay * 2 ** doublings)

    def _claim_until(self) -> float:
        return time.time() + self.timeout + CLAIM_MARGIN

    async def claim(self) -> str | None:
        now = time.time()
        token = self._claim_until()
        async with self.sessions.begin() as session:
            pick = (select(Task.id).where(Task.callback_next_at <= now)
                    .order_by(Task.callback_next_at).limit(1))
            if session.bind.dialect.name == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            row = (await session.execute(
                update(Task).where(Task.id == pick.scalar_subquery(),
                                   Task.callback_next_at <= now)
                .values(callback_next_at=token)
                .returning(Task.id)
            )).first()
        if row is None:
            return None
        self._claims[row[0]] = token
        return str(row[0])

    async def deliver(self, task_id: str) -> bool:
        """One attempt for a task :meth:`claim` returned; True when it was delivered."""
        token = self._claims.pop(task_id, None)
        if token is None:
            return False
        async with self.sessions() as session:
            task = await session.get(Task, task_id)
            cred = await session.get(Credential, task.credential_id) if task else None
        if task is None or cred is None or not task.callback_url:
            await self._record(task_id, token, None)
            return False
        body = orjson.dumps(await self._with_b64(task, payload(task)))
        if token - time.time() < self.timeout + CLAIM_MARGIN / 2:
            renewed = await self._renew(task_id, token)  # building the body took a while
            if renewed is None:
                log.warning("callback_claim_lost", task_id=task_id)
                return False
            token = renewed
        started = time.time()
        status: int | None = None
        error: str | None = None
        outcome = "failed"
        try:
            status = await post_pinned(
                self.client, self.policy, task.callback_url, body,
                {"content-type": "application/json",
                 webhooks.HEADER: webhooks.sign(cred.webhook_secret, body)}, self.timeout)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (CallbackRefused, BadRequest) as e:
            error, outcome = str(e), "refused"
        except (TimeoutError, httpx.TimeoutException):
            error = f"timed out after {self.timeout:g}s"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:300]
        attempt = {"at": started, "status": status, "error": error,
                   "duration": round(time.time() - started, 3)}
        if not await self._record(task_id, token, attempt):
            log.warning("callback_claim_lost", task_id=task_id)
        outcome = "delivered" if error is None else outcome
        metrics.callbacks_total.labels(outcome).inc()
        log.info("callback_attempt", task_id=task.id, trace_id=task.trace_id, status=status,
                 error=error)
        return error is None

    async def _renew(self, task_id: str, token: float) -> float | None:
        """Move our claim's end past a full attempt from now; None if it is no longer ours."""
        fresh = self._claim_until()
        async with self.sessions.begin() as session:
            _, current = await _locked_next_at(session, task_id)
            if current != token:
                return None
            await session.execute(update(Task).where(Task.id == task_id)
                                  .values(callback_next_at=fresh))
        return fresh

    async def _with_b64(self, task: Task, body: dict[str, Any]) -> dict[str, Any]:
        """Callbacks for b64_json requests carry the image bytes, read back from storage."""
        if not body["success"] or task.request.get("response_format") != "b64_json":
            return body
        items = await self.host.as_b64(body["data"]["data"])
        return {**body, "data": {**body["data"], "data": items}}

    async def _record(self, task_id: str, token: float, attempt: dict[str, Any] | None
                      ) -> bool:
        """Append ``attempt`` (None: nothing to deliver, stop) and, if the claim is still
        ours, schedule what follows. False when the claim had lapsed."""
        async with self.sessions.begin() as session:
            stored, current = await _locked_next_at(session, task_id)
            held = current == token
            if attempt is None:
                if held:
                    await session.execute(update(Task).where(Task.id == task_id)
                                          .values(callback_next_at=None))
                return held
            state = dict(stored or {})
            attempts = [*state.get("attempts", []), attempt]
            values: dict[str, Any] = {}
            if held:
                if attempt["error"] is None:
                    state.update(state="delivered", delivered_at=attempt["at"])
                    values["callback_next_at"] = None
                elif len(attempts) >= self.max_attempts:
                    state.update(state="failed")
                    values["callback_next_at"] = None
                else:
                    state.update(state="retrying")
                    attempt["retry_in"] = self.delay(len(attempts))
                    values["callback_next_at"] = time.time() + attempt["retry_in"]
            state["attempts"] = attempts
            await session.execute(update(Task).where(Task.id == task_id)
                                  .values(callback=state, **values))
        return held

    async def aclose(self) -> None:
        await self.client.aclose()
