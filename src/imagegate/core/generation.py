"""Image generation as a task: validate, charge, call the upstream, host the images, settle.

A synchronous request runs its task inline and an asynchronous one waits for a worker,
but both go through :meth:`GenerationService.run`, so they bill and record identically.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from imagegate.core import metrics
from imagegate.core.accounts.money import to_micro
from imagegate.core.errors import (
    ApiError,
    ModelUnavailable,
    Timeout,
    UpstreamFailed,
)
from imagegate.core.hosting import ImageHost
from imagegate.core.routing.channels import ChannelRouter
from imagegate.core.routing.params import Params, stored_request, validate
from imagegate.core.routing.registry import ModelConfig, Registry
from imagegate.core.routing.upstream_errors import provider_error_to_api
from imagegate.core.ssrf import CallbackPolicy
from imagegate.core.tasks.idempotency import Idempotency, Replay
from imagegate.core.tasks.intake import Intake
from imagegate.core.tasks.notify import QueueNotifier
from imagegate.core.tasks.slots import SlotWaiter
from imagegate.core.tasks.store import QUEUED, RUNNING, Claimed, TaskStore
from imagegate.db.models import MICRO, Credential
from imagegate.providers.base import (
    ImageRequest,
    ImageResult,
    ProviderError,
)
from imagegate.providers.streaming import StreamEvent

log = structlog.get_logger("imagegate.generation")


@dataclass(frozen=True, slots=True)
class Job:
    """Everything needed to run one task, whether inline or in a worker."""

    task_id: str
    trace_id: str
    credential_id: str
    model: ModelConfig
    params: Params
    cost: int  # micro-credits held for this task
    # how the task reaches its upstream when it is not a generation (edits: core/edits)
    produce: Callable[[], Awaitable[ImageResult]] | None = None
    # the same, streamed (SPEC section 8): each event with the channel that sent it
    stream: Callable[[], AsyncIterator[tuple[str, StreamEvent]]] | None = None
    # once this runner has recorded the task's end: what only the run needed goes (edits:
    # their stored inputs)
    finished: Callable[[], Awaitable[None]] | None = None

    @property
    def is_async(self) -> bool:
        return self.params.runs_async


@dataclass(frozen=True, slots=True)
class Outcome:
    body: dict[str, Any]
    credits: int


OPENAI_FIELDS = ("background", "output_format", "quality", "size", "usage")


def openai_fields(family: str, meta: dict[str, Any] | None, usage: dict[str, Any] | None
                  ) -> dict[str, Any]:
    """What OpenAI's own response carries beside ``data`` for the gpt-image models, when
    the upstream gave it (SPEC section 3): the SDKs' ImagesResponse fields."""
    if family != "gpt-image":
        return {}
    fields = dict(meta or {})
    if usage:
        fields["usage"] = usage
    return {f: fields[f] for f in OPENAI_FIELDS if f in fields}


def image_request(model: ModelConfig, params: Params) -> ImageRequest:
    return ImageRequest(
        public_model=model.name, family=model.family, upstream_model=model.name,
        prompt=params.prompt, n=params.n, size=params.size, width=params.width,
        height=params.height, aspect_ratio=params.aspect_ratio, image_size=params.image_size,
        quality=params.quality, style=params.style, background=params.background,
        output_format=params.output_format, output_compression=params.output_compression,
        moderation=params.moderation, user=params.user, partial_images=params.partial_images,
    )


class GenerationService:
    def __init__(self, *, registry: Registry, router: ChannelRouter, host: ImageHost,
                 tasks: TaskStore, policy: CallbackPolicy, notifier: QueueNotifier,
                 node_id: str, sync_wait: float,
                 unavailable: dict[str, list[str]], default_concurrency: int = 10,
                 max_queued: int = 1000, slot_wait: float = 0.0) -> None:
        self.registry = registry
        self.router = router
        self.host = host
        self.tasks = tasks
        self.sessions = tasks.sessions
        self.policy = policy
        self.node_id = node_id
        self.sync_wait = sync_wait
        self.unavailable = unavailable  # model -> env vars to set
        self.default_concurrency = default_concurrency
        self.max_queued = max_queued
        self.idempotency = Idempotency(self.sessions)
        self.intake = Intake(self.sessions)
        self.slots = SlotWaiter(slot_wait)
        self.notifier = notifier
        self._running: set[asyncio.Task[Outcome]] = set()
        self._leases: dict[str, tuple[str, asyncio.Task[Any]]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self.stopping = False
        # task type -> the Job of a claimed task of that type (generations: job_of)
        self.job_builders: dict[str, Callable[[Claimed], Job]] = {}
        # what a task type leaves to delete when it ends without a Job (recovery gave up
        # on it, or its record no longer prepares): by the record alone
        self.leftovers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}

    def prepare(self, body: dict[str, Any]) -> tuple[ModelConfig, Params]:
        model, params = validate(self.registry, body)
        missing = self.unavailable.get(model.name)
        if missing:
            raise ModelUnavailable(
                f"model {model.name} is not available: its upstream has no usable credentials; "
                f"set {' or '.join(missing)} and restart the gateway"
            )
        return model, params

    def cost_of(self, model: ModelConfig, params: Params) -> int:
        return to_micro(model.price_per_image(params.quality, params.size)) * params.n

    def concurrency_of(self, credential: Credential) -> int:
        limits = credential.rate_limits or {}
        return int(limits.get("concurrency") or self.default_concurrency)

    async def submit(self, credential: Credential, body: dict[str, Any], trace_id: str,
                     idempotency_key: str | None = None) -> Job | Replay:
        """Validate, record the task and hold its cost, all before any upstream call."""
        model, params = self.prepare(body)
        is_async = params.runs_async
        if idempotency_key is not None:  # a replay is answered even if DNS changed since
            replay = await self.idempotency.find(credential.id, idempotency_key, body)
            if replay is not None:
                return replay
        if params.callback_url is not None:
            await self.policy.check_submission(params.callback_url)
        job = Job(task_id=str(uuid.uuid4()), trace_id=params.trace_id or trace_id,
                  credential_id=credential.id, model=model, params=params,
                  cost=self.cost_of(model, params))
        now = time.time()
        row = {
            "id": job.task_id, "trace_id": job.trace_id, "type": "images_generations",
            "credential_id": credential.id, "model": model.name,
            "mode": "async" if is_async else "sync",
            "request": stored_request(body, model.family), "response": None,
            "status": QUEUED if is_async else RUNNING, "error_code": None,
            "error_message": None, "credits": job.cost, "usage": None, "upstream": None,
            "attempts": 0 if is_async else 1,
            "lease_owner": None if is_async else self.node_id,
            "lease_until": None if is_async else now + self.tasks.lease,
            "callback_url": params.callback_url, "callback": None, "callback_next_at": None,
            "idempotency_key": idempotency_key,
            "request_hash": self.idempotency.hash(body) if idempotency_key else None,
            "created_at": now, "started_at": None if is_async else now, "finished_at": None,
        }
        # Sync requests count against in-flight generations; async ones wait in the queue
        # (workers run at most that many per credential) up to max_queued.
        limit = self.max_queued if is_async else self.concurrency_of(credential)
        try:
            await self.admit(row, job.cost, limit)
        except Exception as e:
            if idempotency_key is not None and self.idempotency.is_conflict(e):
                replay = await self.idempotency.find(credential.id, idempotency_key, body)
                if replay is not None:
                    return replay
            raise
        if is_async:
            self.notifier.notify()
        return job

    async def admit(self, row: dict[str, Any], cost: int, limit: int) -> None:
        """Record the task and hold its cost; a synchronous one over the concurrency limit
        waits for a slot (``slot_wait``) before its 429."""
        if row["status"] != RUNNING or self.slots.wait <= 0:
            await self.intake.admit(row, cost, limit)
            return

        def restamp() -> None:  # it starts when admitted, not when it began to wait
            now = time.time()
            row.update(created_at=now, started_at=now, lease_until=now + self.tasks.lease)

        await self.slots.admit(str(row["credential_id"]),
                               lambda: self.intake.admit(row, cost, limit), restamp)

    async def run_sync(self, job: Job) -> Outcome:
        """Run inline; past the sync wait the client gets 504 while the task carries on."""
        runner = asyncio.create_task(self.run(job, self.node_id, inline=True))
        self._running.add(runner)
        runner.add_done_callback(self._running.discard)
        runner.add_done_callback(lambda _: self.slots.ended(job.credential_id))
        try:
            return await asyncio.wait_for(asyncio.shield(runner), self.sync_wait)
        except TimeoutError:
            raise Timeout(
                f"task {job.task_id} is not finished after {self.sync_wait:g}s; it keeps "
                "running: query it with POST /openai/tasks"
            ) from None

    async def wait_replay(self, replay: Replay) -> Outcome:
        """A repeated synchronous request: the original's response once it is done."""
        task = await self.idempotency.wait(replay.task_id, self.sync_wait)
        if task is None or task.status in (QUEUED, RUNNING):
            raise Timeout(f"task {replay.task_id} is not finished after {self.sync_wait:g}s; "
                          "query it with POST /openai/tasks")
        if task.status != "succeeded" or not task.response:
            raise ApiError(task.error_message or "the task failed",
                           status=_status_of(task.error_code), code=task.error_code)
        body = dict(task.response)
        if task.request.get("response_format") == "b64_json":
            body["data"] = await self.host.as_b64(body["data"])
        return Outcome(body=body, credits=task.credits)

    def job_of(self, claimed: Claimed) -> Job:
        builder = self.job_builders.get(claimed.type)
        if builder is not None:
            return builder(claimed)
        model, params = self.prepare(claimed.request)
        return Job(task_id=claimed.id, trace_id=claimed.trace_id,
                   credential_id=claimed.credential_id, model=model, params=params,
                   cost=claimed.credits)

    async def run_claimed(self, claimed: Claimed, owner: str) -> None:
        """A worker's entry point: the task is already marked running under ``owner``."""
        try:
            job = self.job_of(claimed)
        except ApiError as e:  # the registry changed since submission
            await self.fail_claimed(claimed, owner, e.code, e.message)
            return
        with contextlib.suppress(ApiError):
            await self.run(job, owner)

    async def run(self, job: Job, owner: str, *, inline: bool = False) -> Outcome:
        """Execute while holding the lease; bill in the transaction that records the end.

        ``inline``: a synchronous request whose client is waiting on this node."""
        started = time.monotonic()
        self._hold(job.task_id, owner)
        has_callback = job.params.callback_url is not None
        try:
            if job.produce is not None:
                result = await job.produce()
            else:
                result = await self.router.generate(job.model,
                                                    image_request(job.model, job.params))
            shown, stored = await self.host.host(job.model.family, job.task_id, job.params,
                                                 result)
        except ProviderError as e:
            error = provider_error_to_api(e)
            metrics.task_seconds.labels(job.model.name, "failed").observe(
                time.monotonic() - started)
            log.info("task_failed", task_id=job.task_id, trace_id=job.trace_id,
                     model=job.model.name, code=error.code, reason=error.message)
            await self.fail(job, owner, error.code, error.message)
            raise error from None
        except asyncio.CancelledError:
            if self.stopping and inline:
                # the client is still waiting: it gets an answer, and nothing is billed
                message = ("the gateway is shutting down: this request was stopped and "
                           f"nothing was charged (task {job.task_id}); send it again")
                await asyncio.shield(self.fail(job, owner, "api_error", message))
                raise UpstreamFailed(message, headers={"Retry-After": "1"}) from None
            # a lost lease, or an async task at shutdown: back to the queue, nothing billed
            try:
                await asyncio.shield(self.tasks.hand_back(job.task_id, owner))
            except Exception:  # noqa: BLE001 - the lease runs out and recovery requeues it
                log.warning("hand_back_failed", task_id=job.task_id, exc_info=True)
            raise
        except Exception:
            log.exception("task_failed", task_id=job.task_id, trace_id=job.trace_id)
            await self.fail(job, owner, "api_error", "internal error")
            raise UpstreamFailed(f"internal error (trace_id {job.trace_id})") from None
        finally:
            self._leases.pop(job.task_id, None)
        body = {"success": True, "task_id": job.task_id, "trace_id": job.trace_id,
                "created": int(time.time()), "data": shown,
                **openai_fields(job.model.family, result.meta, result.usage)}
        if await self.tasks.succeed(job.task_id, owner, job.credential_id, job.cost,
                                    {**body, "data": stored}, result.usage, result.upstream,
                                    has_callback):
            metrics.child(metrics.credits_charged, job.model.name).inc(job.cost / MICRO)
            metrics.child(metrics.task_seconds, job.model.name, "succeeded").observe(
                time.monotonic() - started)
            await self.ended(job, True)
        log.info("task_succeeded", task_id=job.task_id, trace_id=job.trace_id,
                 model=job.model.name, upstream=result.upstream,
                 duration_ms=round((time.monotonic() - started) * 1000, 1))
        return Outcome(body=body, credits=job.cost)

    async def ended(self, job: Job, recorded: bool) -> None:
        """The task's end was written (by this runner when ``recorded``; a runner that lost
        the lease leaves all to the one that holds it now)."""
        if not recorded or job.finished is None:
            return
        try:
            await asyncio.shield(job.finished())
        except Exception:  # noqa: BLE001 - the task is done; what is left is only storage
            log.warning("task_cleanup_failed", task_id=job.task_id, exc_info=True)

    async def fail(self, job: Job, owner: str, code: str, message: str) -> None:
        """Record the task's failure (its cost released) and, if this runner recorded it,
        end it."""
        await self.ended(job, await self.tasks.fail(
            job.task_id, owner, job.credential_id, job.cost, code, message,
            has_callback=job.params.callback_url is not None))

    async def fail_claimed(self, claimed: Claimed, owner: str, code: str, message: str) -> None:
        """Fail a claimed task no Job runs (recovery gave up on it, or its record no longer
        prepares); what its type stored for it goes too."""
        if not await self.tasks.fail(claimed.id, owner, claimed.credential_id, claimed.credits,
                                     code, message,
                                     has_callback=bool(claimed.request.get("callback_url"))):
            return
        clear = self.leftovers.get(claimed.type)
        if clear is None:
            return
        try:
            await clear(claimed.request)
        except Exception:  # noqa: BLE001 - as ended(): only storage is left behind
            log.warning("task_cleanup_failed", task_id=claimed.id, exc_info=True)

    def _hold(self, task_id: str, owner: str) -> None:
        """Keep the task's lease alive while it runs (one renewal a round for all tasks)."""
        runner = asyncio.current_task()
        assert runner is not None
        self._leases[task_id] = (owner, runner)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_loop(), name="imagegate-leases")

    async def _renew_loop(self) -> None:
        while self._leases:
            await asyncio.sleep(self.tasks.lease / 3)
            held = dict(self._leases)
            if not held:
                continue
            try:
                kept = await self.tasks.renew({owner for owner, _ in held.values()})
            except Exception:  # noqa: BLE001 - a database blip must not kill the tasks
                log.warning("lease_renew_failed", tasks=len(held), exc_info=True)
                continue
            for task_id, (_, runner) in held.items():
                if task_id not in kept and task_id in self._leases:
                    log.warning("lease_lost", task_id=task_id)
                    runner.cancel()

    def stop_inline(self) -> None:
        """Shutdown: stop synchronous requests still running here; each answers its client
        with an error and is not billed."""
        self.stopping = True
        for runner in list(self._running):
            runner.cancel()

    async def drain(self) -> None:
        """Shutdown: stop what still runs inline, then the admission writer."""
        self.stop_inline()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self.intake.aclose()
        if self._renewer is not None:
            self._renewer.cancel()


def _status_of(code: str | None) -> int:
    return {"bad_request": 400, "forbidden": 403, "timeout": 504}.get(code or "", 500)
