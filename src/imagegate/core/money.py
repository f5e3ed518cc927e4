"""Credits are decimals to people and integer micro-credits to the database."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from imagegate.db.models import MICRO


def to_micro(credits: Decimal | float | int | str) -> int:
    return int((Decimal(str(credits)) * MICRO).to_integral_value(ROUND_HALF_UP))


def from_micro(micro: int) -> float:
    """For JSON: exact to six places, which every float64 can show round-trip."""
    return float(Decimal(micro) / MICRO)


def format_credits(micro: int) -> str:
    return f"{Decimal(micro) / MICRO:f}".rstrip("0").rstrip(".") or "0"
