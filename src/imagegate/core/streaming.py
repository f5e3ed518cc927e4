"""Streamed generations and edits (SPEC section 8): the task's lifecycle, event by event.

The upstream is read by a task of its own, not by the client's request: a client that goes
away mid-stream stops only its own delivery, while the task finishes, hosts its images, is
charged once and stays queryable. What waits for a slow client is bounded (a few events),
as a held synchronous request holds its images. Until the first event, every failure is the
caller's to answer as a JSON error; after it, the stream ends with one error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from PIL import Image

from imagegate import b64
from imagegate.core import metrics
from imagegate.core.conversion import ensure_format
from imagegate.core.errors import ApiError, Timeout, UpstreamFailed
from imagegate.core.generation import GenerationService, Job, image_request, openai_fields
from imagegate.core.routing.channels import total_usage
from imagegate.core.routing.streaming import stream_channels
from imagegate.core.routing.upstream_errors import provider_error_to_api
from imagegate.db.models import MICRO
from imagegate.providers.base import ProviderError, UpstreamUnavailable
from imagegate.providers.streaming import FinalImage, PartialImage, StreamEvent

log = structlog.get_logger("imagegate.streaming")
HELD_EVENTS = 4  # what may wait for a slow client
Source = Callable[[], AsyncIterator[tuple[str, StreamEvent]]]


@dataclass(frozen=True, slots=True)
class Event:
    """One Server-Sent Event: its type and its JSON data."""

    name: str
    data: dict[str, Any]


@dataclass(eq=False)
class Delivery:
    """The client's side of a stream: what the task hands over, while someone listens."""

    queue: asyncio.Queue[Event | ApiError | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=HELD_EVENTS))
    listening: bool = True

    async def put(self, item: Event | ApiError | None) -> None:
        if self.listening:
            await self.queue.put(item)

    def leave(self) -> None:
        """The client went away: the task goes on, and nothing waits for it any more."""
        self.listening = False
        while not self.queue.empty():
            self.queue.get_nowait()


class StreamService:
    def __init__(self, generation: GenerationService) -> None:
        self.generation = generation

    async def open(self, job: Job, operation: str) -> tuple[Event, Delivery]:
        """Start the task; return its first event. A failure before it raises ApiError.

        ``operation``: the events' prefix, ``image_generation`` or ``image_edit``."""
        delivery = Delivery()
        runner = asyncio.create_task(self._run(job, operation, delivery),
                                     name=f"imagegate-stream-{job.task_id}")
        gen = self.generation
        gen._running.add(runner)  # type: ignore[arg-type]
        runner.add_done_callback(gen._running.discard)  # type: ignore[arg-type]
        try:
            first = await asyncio.wait_for(delivery.queue.get(), gen.sync_wait)
        except TimeoutError:
            delivery.leave()  # as a synchronous request: 504, and the task carries on
            raise Timeout(f"task {job.task_id} sent nothing in {gen.sync_wait:g}s; it keeps "
                          "running: query it with POST /openai/tasks") from None
        except BaseException:
            delivery.leave()
            raise
        if isinstance(first, ApiError):
            raise first
        if first is None:  # cannot happen: a task that ends has sent an image or an error
            raise UpstreamFailed(f"the stream of task {job.task_id} ended with no event")
        return first, delivery

    def _source(self, job: Job) -> AsyncIterator[tuple[str, StreamEvent]]:
        if job.stream is not None:
            return job.stream()
        return stream_channels(self.generation.router, job.model,
                               image_request(job.model, job.params))

    async def _run(self, job: Job, operation: str, delivery: Delivery) -> None:
        gen = self.generation
        owner = gen.node_id
        started = time.monotonic()
        gen._hold(job.task_id, owner)
        has_callback = job.params.callback_url is not None
        stored: dict[int, dict[str, Any]] = {}
        usages: list[dict[str, Any]] = []
        meta: dict[str, Any] = {}
        upstream: str | None = None
        try:
            async with asyncio.timeout(job.model.timeout):
                async for channel, event in self._source(job):
                    upstream = channel
                    if isinstance(event, PartialImage):
                        if event.partial_index < job.params.partial_images:
                            await delivery.put(await self._partial(job, operation, event))
                        continue
                    stored[event.index], shown = await self._completed(job, operation, event)
                    usages += [event.usage] if event.usage else []
                    meta = meta or dict(event.meta or {})
                    await delivery.put(shown)
            if not stored:
                raise UpstreamUnavailable(f"the stream of {job.model.name} sent no image")
        except (ProviderError, TimeoutError) as e:
            error = (provider_error_to_api(e) if isinstance(e, ProviderError) else Timeout(
                f"{job.model.name} took longer than its {job.model.timeout:g}s limit"))
            await self._fail(job, owner, error, started, delivery)
            return
        except asyncio.CancelledError:
            # shutdown, or a lost lease: nothing is billed, and a listening client learns why
            error = UpstreamFailed("the gateway stopped this stream and nothing was charged "
                                   f"(task {job.task_id}); send it again")
            await asyncio.shield(self._fail(job, owner, error, started, delivery))
            raise
        except Exception:
            log.exception("task_failed", task_id=job.task_id, trace_id=job.trace_id)
            error = UpstreamFailed(f"internal error (trace_id {job.trace_id})")
            await self._fail(job, owner, error, started, delivery)
            return
        finally:
            gen._leases.pop(job.task_id, None)
        usage = total_usage(usages)
        body = {"success": True, "task_id": job.task_id, "trace_id": job.trace_id,
                "created": int(time.time()), "data": [stored[i] for i in sorted(stored)],
                **openai_fields(job.model.family, meta, usage)}
        if await gen.tasks.succeed(job.task_id, owner, job.credential_id, job.cost, body,
                                   usage, upstream, has_callback):
            metrics.credits_charged.labels(job.model.name).inc(job.cost / MICRO)
            metrics.task_seconds.labels(job.model.name, "succeeded").observe(
                time.monotonic() - started)
            await gen.ended(job, True)
        log.info("task_succeeded", task_id=job.task_id, trace_id=job.trace_id,
                 model=job.model.name, upstream=upstream, stream=True,
                 client_listening=delivery.listening,
                 duration_ms=round((time.monotonic() - started) * 1000, 1))
        await delivery.put(None)

    async def _fail(self, job: Job, owner: str, error: ApiError, started: float,
                    delivery: Delivery) -> None:
        metrics.task_seconds.labels(job.model.name, "failed").observe(time.monotonic() - started)
        log.info("task_failed", task_id=job.task_id, trace_id=job.trace_id,
                 model=job.model.name, code=error.code, reason=error.message, stream=True)
        await self.generation.fail(job, owner, error.code, error.message)
        with contextlib.suppress(TimeoutError):  # a client that reads nothing: let it be
            await asyncio.wait_for(delivery.put(error), 10)

    def _fields(self, job: Job, data: bytes, meta: dict[str, Any] | None) -> dict[str, Any]:
        """OpenAI's image fields: the upstream's where it gave them, else what was made."""
        params = job.params
        size = f"{params.width}x{params.height}" if params.width and params.height else "auto"
        if job.model.family == "nano-banana":
            size = _dimensions(data) or size
        fields = {"size": size, "quality": params.quality or "auto",
                  "background": params.background or "auto",
                  "output_format": params.output_format}
        fields.update({k: v for k, v in (meta or {}).items() if k in fields})
        return fields

    async def _partial(self, job: Job, operation: str, event: PartialImage) -> Event:
        params = job.params
        data, _ = await ensure_format(event.data, event.mime_type, params.output_format,
                                      params.output_compression)
        return Event(f"{operation}.partial_image", {
            "type": f"{operation}.partial_image",
            "b64_json": b64.encode(data),
            "created_at": int(time.time()), **self._fields(job, data, event.meta),
            "partial_image_index": event.partial_index, "image_index": event.index})

    async def _completed(self, job: Job, operation: str, event: FinalImage
                         ) -> tuple[dict[str, Any], Event]:
        data, item = await self.generation.host.host_one(
            job.model.family, job.task_id, event.index, job.params, event.image)
        payload: dict[str, Any] = {
            "type": f"{operation}.completed", "b64_json": b64.encode(data),
            "created_at": int(time.time()), **self._fields(job, data, event.meta)}
        if event.usage and job.model.family == "gpt-image":
            payload["usage"] = event.usage
        payload.update(url=item["url"], revised_prompt=item["revised_prompt"],
                       task_id=job.task_id, image_index=event.index)
        return item, Event(f"{operation}.completed", payload)


def _dimensions(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return f"{image.width}x{image.height}"
    except Exception:  # noqa: BLE001 - only a label
        return None
