"""Credits are decimals to people and integer micro-credits to the database."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from imagegate.core.errors import BadRequest
from imagegate.db.models import MICRO

# Bounds every amount a person can move and every balance a top-up or grant can reach.
# 1e9 credits is 1e15 micro-credits: far from the 9.2e18 where a 64-bit integer (and
# SQLite's exact integer arithmetic, which silently turns into REAL beyond it) gives out,
# so no sum of a credential's ledger can overflow in practice.
MAX_CREDITS = 1_000_000_000
MAX_MICRO = MAX_CREDITS * MICRO


def to_micro(credits: Decimal | float | int | str) -> int:
    return int((Decimal(str(credits)) * MICRO).to_integral_value(ROUND_HALF_UP))


def from_micro(micro: int) -> float:
    """For JSON: exact to six places, which every float64 can show round-trip."""
    return float(Decimal(micro) / MICRO)


def format_credits(micro: int) -> str:
    text = f"{Decimal(micro) / MICRO:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_credits(value: object, field: str = "credits") -> int:
    """An amount someone typed or sent, as exact micro-credits; BadRequest naming ``field``
    when it is not a number, not finite, finer than one micro-credit (it would be rounded
    away, silently) or beyond ``MAX_CREDITS`` either way."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise BadRequest(f"{field} must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise BadRequest(f"{field} must be a number") from None
    if not amount.is_finite():
        raise BadRequest(f"{field} must be a finite number")
    if abs(amount) > MAX_CREDITS:
        raise BadRequest(f"{field} must be at most {MAX_CREDITS:,} credits")
    micro = amount * MICRO
    if micro != micro.to_integral_value():
        raise BadRequest(f"{field} must be a whole number of micro-credits "
                         "(at most 6 decimal places)")
    return int(micro)
