"""The contract between the gateway core and an upstream.

A provider turns one normalized :class:`ImageRequest` into images. It knows
nothing of billing, tasks, storage or HTTP frameworks: the core calls it and
decides what its errors mean for the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from imagegate import b64

if TYPE_CHECKING:
    from imagegate.providers.streaming import StreamEvent


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """What the client asked for, already validated and adapted to the family.

    ``upstream_model`` and ``options`` come from the route in the model registry;
    every other field is the client's, after the family's rules. Fields a family
    ignores are ``None``.
    """

    public_model: str
    family: str
    upstream_model: str
    prompt: str
    n: int = 1
    size: str | None = None  # "WxH" or "auto"; None when the family has no size
    width: int | None = None
    height: int | None = None
    aspect_ratio: str | None = None  # nano-banana family: "16:9"
    image_size: str | None = None  # nano-banana-2/pro: "1K" | "2K" | "4K"
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    output_format: str = "png"  # what the client wants back: png | jpeg | webp
    output_compression: int | None = None
    moderation: str | None = None
    user: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    partial_images: int = 0  # streams only: interim pictures wanted (0-3)


@dataclass(frozen=True)
class InputImage:
    """An image to edit, already checked by the gateway: whole png, jpeg or webp bytes."""

    data: bytes
    mime_type: str
    width: int
    height: int

    @cached_property
    def b64(self) -> str:
        """Encoded once, however many upstream calls (n, retries) carry it."""
        return b64.encode(self.data)


@dataclass(frozen=True, slots=True)
class EditRequest(ImageRequest):
    """An edit: the request's fields plus the images to edit (in order) and an optional
    mask for the first one. Routed like a generation; providers answer it in ``edit``."""

    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    input_fidelity: str | None = None  # gpt-image: high | low


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    data: bytes
    mime_type: str  # what the bytes really are, e.g. "image/png"
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    images: list[GeneratedImage]
    usage: dict[str, Any] | None = None  # upstream token usage, recorded on the task
    upstream: str | None = None  # which channel served it (for logs/metrics), never a key
    # what OpenAI's response says of the images (size, quality, background, output_format),
    # passed on to gpt-image clients as OpenAI's own response carries it (SPEC section 3)
    meta: dict[str, Any] | None = None


class ProviderError(Exception):
    """An upstream could not produce images. The flags tell the router what to do next.

    ``retryable``: the same channel may succeed on another try (after a backoff).
    ``failover``: the model's next channel may succeed where this one cannot.
    ``channel_fault``: the failure says the channel is unhealthy, so it counts toward the
    channel's circuit breaker; a refusal of the prompt says the channel is answering.
    ``local``: the failure is this gateway's own and says nothing of the channel either way.
    """

    retryable: bool = False
    failover: bool = False
    channel_fault: bool = False
    local: bool = False
    retry_limit: int | None = None  # retries of this kind of failure, if fewer than the channel's

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class UpstreamUnavailable(ProviderError):
    """429, 5xx, timeouts, connection errors, garbage bodies: worth another try."""

    retryable = failover = channel_fault = True


class OutOfFiles(ProviderError):
    """This process could not open a connection to the upstream: it has as many files open
    as it may. Requests that end free theirs, so it is worth a retry after the backoff; a
    channel must not cool down for it (every channel would, and stay down after)."""

    retryable = local = True


class NoImage(ProviderError):
    """The upstream answered, but with no image (Gemini: text only, or finishReason OTHER).
    It may draw on a second try; more tries are paid for and rarely differ, and the
    channel is healthy, so this is retried once and then reported with what it said."""

    retryable = True
    retry_limit = 1


class UpstreamRejected(ProviderError):
    """The upstream refused the request as given (bad parameters); retrying won't help."""


class ContentBlocked(ProviderError):
    """Moderation or a safety filter refused the prompt or the result."""


class UpstreamAuthError(ProviderError):
    """Our credentials for the upstream are wrong or missing; another channel's may work."""

    failover = channel_fault = True


class TokenRefused(UpstreamAuthError):
    """The upstream refused an access token we had cached (Vertex, Azure with Entra ID);
    a fresh one may well be accepted, so one retry goes with a new token."""

    retryable = True
    retry_limit = 1


class UpstreamMisconfigured(ProviderError):
    """The upstream does not know the channel's model or path (404): the operator must fix
    the config, so the client gets an api_error and the next channel is tried at once."""

    failover = channel_fault = True


class QuotaExhausted(ProviderError):
    """The account behind the channel is out of quota or credit (OpenAI insufficient_quota,
    a Gemini per-day limit): retrying within minutes cannot help, another channel can."""

    failover = channel_fault = True


class Provider(Protocol):
    """An upstream that makes images. Implementations must be safe to share across tasks.

    ``several_per_call``: one call can return ``request.n`` images. When it cannot, the
    channel router asks for one image per call, n calls at once (a channel's ``fan_out``
    overrides this, for an upstream whose models differ)."""

    name: str
    several_per_call: bool

    async def generate(self, request: ImageRequest) -> ImageResult: ...

    async def edit(self, request: EditRequest) -> ImageResult: ...


    async def aclose(self) -> None: ...


class StreamingProvider(Provider, Protocol):
    """An upstream that also streams (SPEC section 8); one that does not is answered whole,
    as completed images only."""

    def stream(self, request: ImageRequest) -> AsyncIterator[StreamEvent]:
        """The images as the upstream sends them, with interim pictures; an
        :class:`EditRequest` streams an edit."""
        ...


class DeadlineExceeded(ProviderError):
    """The model's total time budget ran out (retries included)."""


class UpstreamCoolingDown(ProviderError):
    """Every channel of the model is skipped by its circuit breaker; ``retry_after`` says
    when one will take a trial request again. Failing fast spares a sick upstream."""
