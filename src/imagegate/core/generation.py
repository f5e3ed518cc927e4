"""Image generation as a task: validate, charge, call the upstream, host the images, settle.

The same :meth:`GenerationService.execute` runs a synchronous request inline and an
asynchronous one in a worker, so both bill and record tasks identically.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import update

from imagegate.core import billing
from imagegate.core.channels import ChannelRouter
from imagegate.core.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    ModelUnavailable,
    Timeout,
    UpstreamFailed,
)
from imagegate.core.images import ensure_format
from imagegate.core.money import to_micro
from imagegate.core.params import Params, validate
from imagegate.core.registry import ModelConfig, Registry
from imagegate.db.models import Credential, Task
from imagegate.providers.base import (
    ContentBlocked,
    DeadlineExceeded,
    ImageRequest,
    ImageResult,
    ProviderError,
    UpstreamAuthError,
    UpstreamRejected,
)
from imagegate.storage.images import EXTENSIONS, ImageStore

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


@dataclass(frozen=True, slots=True)
class Outcome:
    body: dict[str, Any]
    credits: int


def provider_error_to_api(error: ProviderError) -> ApiError:
    if isinstance(error, ContentBlocked):
        return Forbidden(f"content moderation rejected the request: {error.message}")
    if isinstance(error, UpstreamRejected):
        return BadRequest(f"the upstream rejected the request: {error.message}")
    if isinstance(error, DeadlineExceeded):
        return Timeout(f"the image was not ready in time: {error.message}")
    if isinstance(error, UpstreamAuthError):
        return UpstreamFailed(error.message)
    return UpstreamFailed(f"upstream failed: {error.message}")


def image_request(model: ModelConfig, params: Params) -> ImageRequest:
    return ImageRequest(
        public_model=model.name, family=model.family, upstream_model=model.name,
        prompt=params.prompt, n=params.n, size=params.size, width=params.width,
        height=params.height, aspect_ratio=params.aspect_ratio, image_size=params.image_size,
        quality=params.quality, style=params.style, background=params.background,
        output_format=params.output_format, output_compression=params.output_compression,
        moderation=params.moderation, user=params.user,
    )


class GenerationService:
    def __init__(self, *, registry: Registry, router: ChannelRouter, store: ImageStore,
                 sessions: Any, public_base_url: str, sync_wait: float,
                 unavailable: dict[str, list[str]]) -> None:
        self.registry = registry
        self.router = router
        self.store = store
        self.sessions = sessions
        self.public_base_url = public_base_url
        self.sync_wait = sync_wait
        self.unavailable = unavailable  # model -> env vars to set
        self._running: set[asyncio.Task[Outcome]] = set()

    def prepare(self, body: dict[str, Any]) -> tuple[ModelConfig, Params]:
        model, params = validate(self.registry, body)
        missing = self.unavailable.get(model.name)
        if missing:
            raise ModelUnavailable(
                f"model {model.name} is not available: its upstream has no API key configured; "
                f"set {' or '.join(missing)} and restart the gateway"
            )
        return model, params

    def cost_of(self, model: ModelConfig, params: Params) -> int:
        return to_micro(model.price_per_image(params.quality, params.size)) * params.n

    async def submit(self, credential: Credential, body: dict[str, Any], trace_id: str) -> Job:
        """Validate, record the task and hold its cost, all before any upstream call."""
        model, params = self.prepare(body)
        job = Job(task_id=str(uuid.uuid4()), trace_id=params.trace_id or trace_id,
                  credential_id=credential.id, model=model, params=params,
                  cost=self.cost_of(model, params))
        now = time.time()
        async with self.sessions.begin() as session:
            session.add(Task(
                id=job.task_id, trace_id=job.trace_id, credential_id=credential.id,
                model=model.name, mode="async" if params.is_async else "sync",
                request=_stored_request(body), status="running", credits=job.cost,
                created_at=now, started_at=now, attempts=1, callback_url=params.callback_url,
            ))
            await session.flush()
            await billing.reserve(session, credential.id, job.task_id, job.cost)
        return job

    async def run_sync(self, job: Job) -> Outcome:
        """Run inline; past the sync wait the client gets 504 while the task carries on."""
        runner = asyncio.create_task(self.execute(job))
        self._running.add(runner)
        runner.add_done_callback(self._running.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(runner), self.sync_wait)
        except TimeoutError:
            raise Timeout(
                f"task {job.task_id} is not finished after {self.sync_wait:g}s; it keeps "
                "running: query it with POST /openai/tasks"
            ) from None

    async def execute(self, job: Job) -> Outcome:
        try:
            result = await self.router.generate(job.model, image_request(job.model, job.params))
            data, stored_data = await self._host(job, result)
        except ProviderError as e:
            await self._fail(job, provider_error_to_api(e))
            raise provider_error_to_api(e) from None
        except asyncio.CancelledError:
            await asyncio.shield(self._fail(job, UpstreamFailed("the task was cancelled")))
            raise
        except Exception:
            log.exception("task_failed", task_id=job.task_id, trace_id=job.trace_id)
            await self._fail(job, UpstreamFailed("internal error"))
            raise UpstreamFailed(f"internal error (trace_id {job.trace_id})") from None
        body = {"success": True, "task_id": job.task_id, "trace_id": job.trace_id,
                "created": int(time.time()), "data": data}
        stored = {**body, "data": stored_data}
        async with self.sessions.begin() as session:
            await session.execute(update(Task).where(Task.id == job.task_id).values(
                status="succeeded", response=stored, finished_at=time.time(),
                usage=result.usage, upstream=result.upstream,
            ))
            await billing.settle(session, job.credential_id, job.task_id, job.cost)
        return Outcome(body=body, credits=job.cost)

    async def _fail(self, job: Job, error: ApiError) -> None:
        async with self.sessions.begin() as session:
            await session.execute(update(Task).where(Task.id == job.task_id).values(
                status="failed", error_code=error.code, error_message=error.message,
                finished_at=time.time(),
            ))
            await billing.release(session, job.credential_id, job.task_id, job.cost)

    async def _host(self, job: Job, result: ImageResult
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Store every image under our own key; return the response items and the task's.

        Task records keep the hosted URL, not megabytes of base64."""
        params = job.params
        if not result.images:
            raise ProviderError("the upstream returned no images")
        converted = await asyncio.gather(*(
            ensure_format(img.data, img.mime_type, params.output_format,
                          params.output_compression)
            for img in result.images
        ))
        keys = [f"{job.model.family}/{job.task_id}_{i}.{EXTENSIONS[mime]}"
                for i, (_, mime) in enumerate(converted)]
        await asyncio.gather(*(self.store.put(k, d) for k, (d, _) in zip(keys, converted,
                                                                         strict=True)))
        shown, stored = [], []
        for key, (data, _), image in zip(keys, converted, result.images, strict=True):
            revised = params.prompt
            if job.model.family != "nano-banana" and image.revised_prompt:
                revised = image.revised_prompt
            url = self.file_url(key)
            stored.append({"revised_prompt": revised, "url": url})
            if params.response_format == "b64_json":
                shown.append({"revised_prompt": revised,
                              "b64_json": base64.b64encode(data).decode()})
            else:
                shown.append({"revised_prompt": revised, "url": url})
        return shown, stored

    def file_url(self, key: str) -> str:
        return f"{self.public_base_url}/files/{key}"


def _stored_request(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if not k.startswith("_")}
