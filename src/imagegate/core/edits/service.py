"""Image edits as tasks: read and check the inputs, store them, charge, then run the task
through the generations lifecycle (lease, retries, hosting, billing, callbacks).

Every input is read and checked before the task exists, so a bad input is a 400 that costs
nothing. Inputs go to storage under unguessable keys and the task record refers to them by
key (never by bytes), so a worker, a retry or crash recovery runs the same edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from imagegate.core.accounts.money import to_micro
from imagegate.core.edits.inputs import Picture, check_mask, inspect
from imagegate.core.edits.params import (
    MAX_IMAGES,
    edit_options,
    fit_to_input,
)
from imagegate.core.edits.sources import Blob, Budget, Reader, Source, label_of
from imagegate.core.errors import ApiError, BadRequest
from imagegate.core.generation import GenerationService, Job, image_request
from imagegate.core.routing.params import EDIT_FIELDS, Params, stored_request
from imagegate.core.routing.registry import ModelConfig
from imagegate.core.routing.streaming import stream_channels
from imagegate.core.tasks.idempotency import Replay
from imagegate.core.tasks.store import QUEUED, RUNNING, Claimed
from imagegate.db.models import Credential
from imagegate.providers.base import EditRequest, ImageResult, InputImage
from imagegate.providers.streaming import StreamEvent
from imagegate.storage.store import EXTENSIONS, ImageStore

TYPE = "images_edits"


@dataclass(frozen=True, slots=True)
class StoredInput:
    """An input in storage, as the task record refers to it."""

    key: str
    mime_type: str
    width: int
    height: int
    bytes: int

    @classmethod
    def of(cls, record: dict[str, Any]) -> StoredInput:
        return cls(str(record["key"]), str(record["mime_type"]), int(record["width"]),
                   int(record["height"]), int(record["bytes"]))


def edit_request(model: ModelConfig, params: Params, images: tuple[InputImage, ...],
                 mask: InputImage | None, fidelity: str | None) -> EditRequest:
    base = image_request(model, params)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return EditRequest(**fields, images=images, mask=mask, input_fidelity=fidelity)


class EditService:
    def __init__(self, generation: GenerationService, store: ImageStore, reader: Reader, *,
                 max_request_bytes: int, max_pixels: int, keep_inputs: bool = False) -> None:
        self.generation = generation
        self.keep_inputs = keep_inputs  # else deleted once the task's end is recorded
        self.store = store
        self.reader = reader
        self.max_request_bytes = max_request_bytes
        self.max_pixels = max_pixels
        generation.job_builders[TYPE] = self.job_of  # workers run claimed edits through us
        if not keep_inputs:
            generation.leftovers[TYPE] = self._forget_inputs_of

    def prepare(self, body: dict[str, Any], *, has_mask: bool
                ) -> tuple[ModelConfig, Params, str | None]:
        model, params = self.generation.prepare(body)
        return model, params, edit_options(model, body, has_mask=has_mask)

    def cost_of(self, model: ModelConfig, params: Params) -> int:
        return to_micro(model.price_per_image(params.quality, params.size, "edits")) * params.n

    async def submit(self, credential: Credential, body: dict[str, Any], images: list[Source],
                     mask: Source | None, trace_id: str, idempotency_key: str | None = None
                     ) -> Job | Replay:
        """Check everything, store the inputs, record the task and hold its cost; no
        upstream call yet."""
        gen = self.generation
        model, params, fidelity = self.prepare(body, has_mask=mask is not None)
        if not images:
            raise BadRequest("image is required: one file (multipart image, or image[] "
                             f"repeated) or a URL, or a list of up to {MAX_IMAGES}")
        if len(images) > MAX_IMAGES:
            raise BadRequest(f"at most {MAX_IMAGES} images per edit; got {len(images)}")
        blobs: list[Blob] = []
        try:
            pictures = await self._read(images, mask, blobs)
            first = pictures[0]
            if mask is not None:
                check_mask(pictures[-1], first, blobs[-1].label)
            params = fit_to_input(model, params, body, first.width, first.height)
            if params.callback_url is not None:
                await gen.policy.check_submission(params.callback_url)
            fingerprint = {**stored_request(body, model.family, EDIT_FIELDS),
                           "inputs": [b.sha256 for b in blobs], "mask": mask is not None}
            if idempotency_key is not None:
                replay = await gen.idempotency.find(credential.id, idempotency_key, fingerprint)
                if replay is not None:
                    return replay
            stored = await self._store(blobs, pictures)
        finally:
            for blob in blobs:
                blob.close()
        inputs = {"images": [dataclasses.asdict(s) for s in stored[:len(images)]],
                  "mask": dataclasses.asdict(stored[-1]) if mask is not None else None}
        try:
            return await self._admit(credential, model, params, fidelity, body, inputs,
                                     fingerprint, trace_id, idempotency_key)
        except BaseException:
            await self._forget(stored)
            raise

    async def _read(self, images: list[Source], mask: Source | None, blobs: list[Blob]
                    ) -> list[Picture]:
        """Read every input (URLs at once), then check each; ``blobs`` gets what was read
        even when something fails, for the caller to close."""
        sources = [*images, *([mask] if mask is not None else [])]
        budget = Budget(self.max_request_bytes)
        read: dict[int, Blob] = {}

        async def one(i: int, source: Source) -> None:
            read[i] = await self.reader.read(source, label_of(source, i + 1, len(images)),
                                             budget)

        try:
            async with asyncio.TaskGroup() as group:
                for i, source in enumerate(sources):
                    group.create_task(one(i, source))
        except BaseExceptionGroup as group_error:
            raise _first(group_error) from None
        finally:
            blobs.extend(read[i] for i in sorted(read))
        return list(await asyncio.gather(*(
            asyncio.to_thread(inspect, b.file, b.size, b.label, self.max_pixels)
            for b in blobs)))

    async def _store(self, blobs: list[Blob], pictures: list[Picture]) -> list[StoredInput]:
        stored = [StoredInput(f"inputs/{secrets.token_urlsafe(24)}.{EXTENSIONS[p.mime_type]}",
                              p.mime_type, p.width, p.height, b.size)
                  for b, p in zip(blobs, pictures, strict=True)]
        try:
            await asyncio.gather(*(self.store.put_file(s.key, b.file)
                                   for s, b in zip(stored, blobs, strict=True)))
        except BaseException:
            await self._forget(stored)
            raise
        return stored

    async def _forget(self, stored: list[StoredInput]) -> None:
        """Inputs of a task that was never recorded (refused, or a replay won the race)."""
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.gather(*(self.store.delete(s.key) for s in stored),
                                                return_exceptions=True))

    async def _admit(self, credential: Credential, model: ModelConfig, params: Params,
                     fidelity: str | None, body: dict[str, Any], inputs: dict[str, Any],
                     fingerprint: dict[str, Any], trace_id: str, idempotency_key: str | None
                     ) -> Job | Replay:
        gen = self.generation
        is_async = params.runs_async
        job = Job(task_id=str(uuid.uuid4()), trace_id=params.trace_id or trace_id,
                  credential_id=credential.id, model=model, params=params,
                  cost=self.cost_of(model, params),
                  produce=self._producer(model, params, fidelity, inputs),
                  stream=partial(self._stream, model, params, fidelity, inputs),
                  finished=self._cleanup(inputs))
        now = time.time()
        row = {
            "id": job.task_id, "trace_id": job.trace_id, "type": TYPE,
            "credential_id": credential.id, "model": model.name,
            "mode": "async" if is_async else "sync",
            "request": {**stored_request(body, model.family, EDIT_FIELDS), "inputs": inputs},
            "response": None,
            "status": QUEUED if is_async else RUNNING, "error_code": None,
            "error_message": None, "credits": job.cost, "usage": None, "upstream": None,
            "attempts": 0 if is_async else 1,
            "lease_owner": None if is_async else gen.node_id,
            "lease_until": None if is_async else now + gen.tasks.lease,
            "callback_url": params.callback_url, "callback": None, "callback_next_at": None,
            "idempotency_key": idempotency_key,
            "request_hash": gen.idempotency.hash(fingerprint) if idempotency_key else None,
            "created_at": now, "started_at": None if is_async else now, "finished_at": None,
        }
        limit = gen.max_queued if is_async else gen.concurrency_of(credential)
        try:
            await gen.admit(row, job.cost, limit)
        except Exception as e:
            if idempotency_key is not None and gen.idempotency.is_conflict(e):
                replay = await gen.idempotency.find(credential.id, idempotency_key, fingerprint)
                if replay is not None:
                    await self._forget(_stored(inputs))
                    return replay
            raise
        if is_async:
            gen.notifier.notify()
        return job

    def job_of(self, claimed: Claimed) -> Job:
        """A claimed edit task, rebuilt from its record (a worker, a retry, recovery)."""
        body = claimed.request
        inputs = body.get("inputs") or {}
        images = [StoredInput.of(r) for r in inputs.get("images") or []]
        if not images:
            raise BadRequest(f"task {claimed.id} has no input images in its record")
        has_mask = bool(inputs.get("mask"))
        model, params, fidelity = self.prepare(body, has_mask=has_mask)
        params = fit_to_input(model, params, body, images[0].width, images[0].height)
        return Job(task_id=claimed.id, trace_id=claimed.trace_id,
                   credential_id=claimed.credential_id, model=model, params=params,
                   cost=claimed.credits, produce=self._producer(model, params, fidelity, inputs),
                   finished=self._cleanup(inputs))

    async def _forget_inputs_of(self, record: dict[str, Any]) -> None:
        await self._forget(_stored(record.get("inputs") or {}))

    def _cleanup(self, inputs: dict[str, Any]) -> partial[Any] | None:
        """The inputs serve the run only (answers, records and replays never read them)."""
        if self.keep_inputs:
            return None
        return partial(self._forget, _stored(inputs))

    def _producer(self, model: ModelConfig, params: Params, fidelity: str | None,
                  inputs: dict[str, Any]) -> partial[Any]:
        return partial(self._produce, model, params, fidelity, inputs)

    async def _produce(self, model: ModelConfig, params: Params, fidelity: str | None,
                       inputs: dict[str, Any]) -> ImageResult:
        """Inside the task's run: the inputs from storage, then the model's channels."""
        request = await self._request(model, params, fidelity, inputs)
        return await self.generation.router.edit(model, request)

    async def _request(self, model: ModelConfig, params: Params, fidelity: str | None,
                       inputs: dict[str, Any]) -> EditRequest:
        images = tuple(await asyncio.gather(*(
            self._load(StoredInput.of(r)) for r in inputs.get("images") or [])))
        mask = await self._load(StoredInput.of(inputs["mask"])) if inputs.get("mask") else None
        return edit_request(model, params, images, mask, fidelity)

    async def _stream(self, model: ModelConfig, params: Params, fidelity: str | None,
                      inputs: dict[str, Any]) -> AsyncIterator[tuple[str, StreamEvent]]:
        """A streamed edit: the inputs from storage, then the model's channels, streamed."""
        request = await self._request(model, params, fidelity, inputs)
        async for item in stream_channels(self.generation.router, model, request):
            yield item

    async def _load(self, stored: StoredInput) -> InputImage:
        data = await self.store.get(stored.key)
        if data is None:
            raise RuntimeError(f"input {stored.key} of an edit task is missing from storage")
        return InputImage(data, stored.mime_type, stored.width, stored.height)

    async def aclose(self) -> None:
        await self.reader.aclose()


def _stored(inputs: dict[str, Any]) -> list[StoredInput]:
    """Every stored input a record names: its images, and its mask if any."""
    return [StoredInput.of(i) for i in
            [*(inputs.get("images") or []), *([inputs["mask"]] if inputs.get("mask") else [])]]


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a client should see from concurrent reads: a refusal of theirs before
    anything else."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    return next((e for e in leaves if isinstance(e, ApiError)), leaves[0])
