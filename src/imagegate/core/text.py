"""Client text on its way into an error message or the database.

An error message that echoes what a client sent must stay short whatever was sent, and a
string PostgreSQL cannot store (it refuses NUL in text) must be turned away before a query
carries it there.
"""

from __future__ import annotations

import orjson

MAX_ECHO = 60  # characters of a client's value an error message repeats
MAX_MESSAGE = 1000  # no error message is longer, whatever it quotes


def json_type(value: object) -> str:
    """A value's type as JSON spells it, for error messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
             float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def shown(value: object, limit: int = MAX_ECHO) -> str:
    """A client's value in an error message: JSON-spelled and cut short."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    except orjson.JSONEncodeError:  # nested past orjson's limit
        text = json_type(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def cut(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message (or a path) cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def storable(text: str) -> bool:
    """Whether every database we support takes this text (PostgreSQL refuses NUL)."""
    return "\x00" not in text
