"""What the console's health page shows: this node's channels and their breakers, and the
task queue, from the same sources `/metrics` exports."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from imagegate.core import metrics
from imagegate.core.routing.channels import ChannelRouter, channel_name


@dataclass
class ChannelHealth:
    name: str  # upstream/model, as in the metrics' channel label
    upstream: str
    provider: str
    models: list[str] = field(default_factory=list)  # public models that route here
    state: str = "closed"  # closed | open | half-open | trial
    failures: int = 0  # consecutive, toward the breaker threshold
    open_for: float = 0.0  # seconds until an open breaker lets a trial through
    calls: dict[str, int] = field(default_factory=dict)  # outcome -> count on this node


def channels(router: ChannelRouter) -> list[ChannelHealth]:
    now = time.monotonic()
    calls = _upstream_calls()
    found: dict[str, ChannelHealth] = {}
    for model in router.registry.models.values():
        for channel in model.channels:
            name = channel_name(channel)
            health = found.get(name)
            if health is None:
                upstream = router.registry.upstreams[channel.upstream]
                health = found[name] = ChannelHealth(
                    name=name, upstream=channel.upstream, provider=upstream.type,
                    calls=calls.get(name, {}))
                breaker = router.breakers.get(name)
                if breaker is not None:
                    health.failures = breaker.failures
                    if breaker.trial:
                        health.state = "trial"
                    elif breaker.open_until > now:
                        health.state, health.open_for = "open", breaker.open_until - now
                    elif breaker.open_until:
                        health.state = "half-open"
            health.models.append(model.name)
    return sorted(found.values(), key=lambda h: h.name)


def _upstream_calls() -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for family in metrics.upstream_calls.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[sample.labels["channel"]][sample.labels["outcome"]] = int(sample.value)
    return out
