"""The model registry: which public models exist, how they are priced and where they are served.

Loaded from YAML (the packaged ``models.yaml`` unless the operator passes their own).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

Family = Literal["dalle", "gpt-image", "nano-banana"]
PARAMETERS = (
    "prompt", "n", "size", "quality", "style", "background", "output_format",
    "output_compression", "moderation", "user", "input_fidelity",  # the last: edits only
)
# The key's variable when an upstream does not name one (the providers say the same).
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY",
                   "azure": "AZURE_OPENAI_API_KEY", "openrouter": "OPENROUTER_API_KEY"}
AUTO_PIXELS = 1024 * 1024  # size "auto" (gpt-image) is priced as a 1024x1024 image
MAX_PRICE = Decimal(1_000_000)


class ConfigError(Exception):
    """The registry file is unusable; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpstreamConfig(_Strict):
    type: Literal["openai", "gemini", "azure", "vertex", "openrouter", "sandbox"]
    base_url: str = ""
    api_key_env: str | None = None
    organization_env: str | None = None
    timeout: float = 600.0
    max_connections: int = 200
    # n > 1 as n one-image calls for every channel of this upstream (a channel's own
    # `fan_out` wins); None: the upstream type and the model's family decide
    fan_out: bool | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # what the type needs besides

    @model_validator(mode="after")
    def _type_needs(self) -> UpstreamConfig:
        """What a type cannot work without, said when the registry loads."""
        if self.type == "azure" and not self.base_url:
            raise ValueError("type azure needs base_url: the resource endpoint, "
                             "https://<resource>.openai.azure.com")
        auth = self.options.get("auth", "api-key")
        if self.type == "azure" and auth not in ("api-key", "bearer", "entra"):
            raise ValueError("options.auth of type azure is api-key, bearer or entra")
        if self.type == "azure" and auth == "entra":
            missing = [f"options.{o}" for o in ("tenant_id", "client_id")
                       if not self.options.get(o)]
            if missing:
                raise ValueError(f"type azure with auth entra needs {' and '.join(missing)}: "
                                 "the service principal's directory and application IDs")
        return self

    @property
    def key_env(self) -> str | None:
        """The variable holding the key: ``api_key_env``, else the type's usual one (for
        Azure with Entra ID, the service principal's secret)."""
        if self.api_key_env:
            return self.api_key_env
        if self.type == "azure" and self.options.get("auth") == "entra":
            return "AZURE_CLIENT_SECRET"  # azure-identity's EnvironmentCredential reads it too
        return DEFAULT_KEY_ENV.get(self.type)

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        name = self.key_env
        return (env.get(name) or None) if name else None

    def missing(self, environ: Mapping[str, str] | None = None) -> str | None:
        """What to set before this upstream can be called, or None when nothing is missing.
        A Vertex key file is read at the first request: a path that cannot be read is said
        at startup instead. Default credentials (no key file) cannot be checked offline."""
        if self.type == "sandbox":
            return None
        key_file = self.options.get("key_file") if self.type == "vertex" else None
        if key_file:
            problem = _unreadable(Path(str(key_file)))
            return (f"options.key_file to a readable service-account key file ({key_file}: "
                    f"{problem})") if problem else None
        if not self.key_env or self.api_key(environ):
            return None
        return self.key_env


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return "not found"
    except IsADirectoryError:
        return "a directory"
    except PermissionError:
        return "not readable by this process"
    except OSError as e:
        return e.strerror or type(e).__name__


class ChannelConfig(_Strict):
    upstream: str
    model: str
    priority: int = 0
    weight: int = Field(default=1, ge=1)
    send: tuple[str, ...] | None = None  # None: everything the family accepts
    map: dict[str, dict[str, str]] = Field(default_factory=dict)
    image_size: bool = False
    max_retries: int = Field(default=2, ge=0)
    # n > 1 as n concurrent one-image calls: None leaves it to the upstream type (gemini
    # fans out, openai asks for n in one call); true for an OpenAI-compatible service
    # that serves a model able to make one image per call (Gemini's, behind a proxy)
    fan_out: bool | None = None
    # values the upstream model refuses, e.g. {background: [transparent]} for gpt-image-2:
    # such a request skips the channel, and is a 400 naming the parameter when no channel
    # of the model is left
    unsupported: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("send")
    @classmethod
    def _known_parameters(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(v or ()) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; known: {list(PARAMETERS)}")
        return v

    @field_validator("unsupported")
    @classmethod
    def _known_unsupported(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = sorted(set(v) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; known: {list(PARAMETERS)}")
        return v

    def refuses(self, values: Mapping[str, Any]) -> str | None:
        """The first parameter whose value this channel's upstream model refuses, if any."""
        for field, refused in self.unsupported.items():
            if values.get(field) in refused:
                return field
        return None


def _whole_micro_credits(v: Decimal) -> Decimal:
    """A finer price would be rounded when charged: refuse it where the operator sees why."""
    if v != v.quantize(Decimal("0.000001")):
        raise ValueError("prices have at most 6 decimal places (one micro-credit)")
    return v


def pixels_of(size: str | None) -> int:
    """Pixels of a WxH size; ``auto`` (or none) counts as 1024x1024."""
    width, _, height = (size or "").partition("x")
    if width.isdigit() and height.isdigit():
        return int(width) * int(height)
    return AUTO_PIXELS


class PriceTier(_Strict):
    """A price for requests matching every condition given: a quality, a list of sizes,
    and/or a band of pixel counts (``min_pixels``..``max_pixels``, both inclusive), which
    suits models taking any WxH such as gpt-image-2. A tier with an ``operation`` prices
    only that operation (edit prices: ``operation: edits``)."""

    price: Decimal = Field(ge=0, le=MAX_PRICE)
    operation: Literal["generations", "edits"] | None = None
    quality: str | None = None
    size: tuple[str, ...] | None = None
    min_pixels: int | None = Field(default=None, ge=0)
    max_pixels: int | None = Field(default=None, ge=1)

    @field_validator("size", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    _price = field_validator("price")(_whole_micro_credits)

    @model_validator(mode="after")
    def _band(self) -> PriceTier:
        if (self.min_pixels is not None and self.max_pixels is not None
                and self.min_pixels > self.max_pixels):
            raise ValueError("min_pixels must not be above max_pixels")
        return self

    def matches(self, quality: str | None, size: str | None) -> bool:
        if self.quality is not None and self.quality != quality:
            return False
        if self.size is not None and size not in self.size:
            return False
        if self.min_pixels is None and self.max_pixels is None:
            return True
        pixels = pixels_of(size)
        return ((self.min_pixels is None or pixels >= self.min_pixels)
                and (self.max_pixels is None or pixels <= self.max_pixels))

    @property
    def specificity(self) -> int:
        sized = self.size is not None or self.min_pixels is not None or (
            self.max_pixels is not None)
        return (self.quality is not None) + sized


class ModelConfig(_Strict):
    name: str
    family: Family
    price: Decimal = Field(ge=0, le=MAX_PRICE)
    tiers: tuple[PriceTier, ...] = ()
    timeout: float = 600.0
    sizes: tuple[str, ...] | Literal["flexible"] | None = None
    extra_ratios: tuple[str, ...] = ()
    channels: tuple[ChannelConfig, ...] = Field(min_length=1)

    _price = field_validator("price")(_whole_micro_credits)

    def unsupported(self) -> dict[str, tuple[str, ...]]:
        """The values every channel refuses: a request with one is a 400 for this model."""
        common: dict[str, set[str]] | None = None
        for channel in self.channels:
            here = {f: set(values) for f, values in channel.unsupported.items()}
            common = here if common is None else {
                f: common[f] & here[f] for f in common.keys() & here.keys()}
        return {f: tuple(sorted(v)) for f, v in (common or {}).items() if v}

    def price_per_image(self, quality: str | None, size: str | None,
                        operation: str = "generations") -> Decimal:
        """The most specific matching tier (quality and size beat either) wins; ties go to
        the later one; with none matching, ``price``. Tiers naming the operation beat those
        that do not, so edits cost what generations do unless edit tiers say otherwise."""
        best, best_score = self.price, -1
        for tier in self.tiers:
            if tier.operation not in (None, operation) or not tier.matches(quality, size):
                continue
            score = tier.specificity + (10 if tier.operation else 0)
            if score >= best_score:
                best, best_score = tier.price, score
        return best


class Registry(_Strict):
    upstreams: dict[str, UpstreamConfig]
    models: dict[str, ModelConfig]

    def model(self, name: str) -> ModelConfig | None:
        return self.models.get(name)

    def missing_credentials(self, model: ModelConfig, environ: Mapping[str, str] | None = None
                            ) -> list[str]:
        """What to set before any channel of ``model`` can be used ([] = ready): environment
        variables, or a key file."""
        missing: list[str] = []
        for channel in model.channels:
            need = self.upstreams[channel.upstream].missing(environ)
            if need is None:
                return []
            missing.append(need)
        return sorted(set(missing))

    def sandboxed(self) -> Registry:
        """Every model served by the sandbox provider, keeping names, families, prices and
        each channel's upstream model and refusals: code written against the sandbox must
        not meet a new 400 in production, and its 400s name what production's do."""
        ups = {"sandbox": UpstreamConfig(type="sandbox")}
        models = {
            name: m.model_copy(update={"channels": tuple(ChannelConfig(
                upstream="sandbox", model=c.model, priority=c.priority, weight=c.weight,
                image_size=c.image_size, unsupported=c.unsupported) for c in m.channels)})
            for name, m in self.models.items()
        }
        return Registry(upstreams=ups, models=models)


def default_config_text() -> str:
    return resources.files("imagegate").joinpath("models.yaml").read_text("utf-8")


def load_registry(path: str | Path | None = None) -> Registry:
    if path is None:
        text, where = default_config_text(), "packaged models.yaml"
    else:
        try:
            text, where = Path(path).read_text("utf-8"), str(path)
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
    return parse_registry(text, where)


def parse_registry(text: str, where: str = "config") -> Registry:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with 'upstreams' and 'models'")
    models = raw.get("models") or {}
    if isinstance(models, dict):
        raw["models"] = {
            name: {"name": name, **(spec or {})} if isinstance(spec, dict | None) else spec
            for name, spec in models.items()
        }
    try:
        registry = Registry.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{where}: {e}") from e
    for model in registry.models.values():
        for channel in model.channels:
            if channel.upstream not in registry.upstreams:
                raise ConfigError(
                    f"{where}: model {model.name!r} uses unknown upstream {channel.upstream!r}"
                )
    return registry
