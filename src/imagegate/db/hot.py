"""The statements every request runs, executed on SQLite's own cursor.

SQLAlchemy Core spends more per execution than SQLite does (an execution context, the
compiled cache's lookup, parameter processing, a result wrapper: ~half of the admission
transaction's CPU, py-spy, bench/RESULTS.md). A :class:`Hot` statement is compiled by
SQLAlchemy once (same SQL, same bind processors, so the same stored values) and, on
SQLite, run with the driver directly; on any other database it is plain ``conn.execute``.
Statements whose parameters SQLAlchemy renders at execution (IN lists) or fills in itself
(column defaults) are not for this: they raise at first use, in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

Params = Mapping[str, Any]
T = TypeVar("T")


class _Compiled:
    __slots__ = ("sql", "names", "literals", "processors")

    def __init__(self, statement: Any, conn: Connection, keys: Sequence[str] | None) -> None:
        compiled = statement.compile(dialect=conn.dialect, column_keys=keys)
        if compiled.positiontup is None or "POSTCOMPILE" in compiled.string:
            raise TypeError(f"not a statement for Hot: {compiled.string!r}")
        self.sql: str = compiled.string
        self.names: list[str] = list(compiled.positiontup)
        self.literals: dict[str, Any] = {
            name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        processors = compiled._bind_processors
        self.processors: list[Callable[[Any], Any] | None] = [
            processors.get(name) for name in self.names]

    def row(self, params: Params) -> tuple[Any, ...]:
        out = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = params[name] if name in params else self.literals[name]
            out.append(value if process is None else process(value))  # None too: JSON null
        return tuple(out)


class Hot:
    """One statement, compiled once per set of parameter names (an INSERT's columns)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    def _for(self, conn: Connection, params: Params) -> _Compiled:
        keys = tuple(params)
        found = self._compiled.get(keys)
        if found is None:
            found = self._compiled[keys] = _Compiled(self.statement, conn, list(keys))
        return found

    def rows(self, conn: Connection, params: Params) -> list[Any]:
        """Every row the statement returns (SELECT, or RETURNING), as tuples."""
        if conn.dialect.name != "sqlite":
            return list(conn.execute(self.statement, params).all())
        compiled = self._for(conn, params)
        return _run(conn, compiled.sql, lambda c: c.execute(
            compiled.sql, compiled.row(params)).fetchall())

    def count(self, conn: Connection, params: Params) -> int:
        """Rows changed by an UPDATE or DELETE without RETURNING."""
        if conn.dialect.name != "sqlite":
            return int(conn.execute(self.statement, params).rowcount)  # type: ignore[attr-defined]
        compiled = self._for(conn, params)
        return _run(conn, compiled.sql, lambda c: int(c.execute(
            compiled.sql, compiled.row(params)).rowcount))

    def many(self, conn: Connection, rows: Sequence[Params]) -> None:
        """One execution per row (an INSERT of several rows with the same keys)."""
        if not rows:
            return
        if conn.dialect.name != "sqlite":
            conn.execute(self.statement, list(rows))
            return
        compiled = self._for(conn, rows[0])
        if len(rows) == 1:
            _run(conn, compiled.sql, lambda c: c.execute(compiled.sql, compiled.row(rows[0])))
        else:
            _run(conn, compiled.sql, lambda c: c.executemany(
                compiled.sql, [compiled.row(r) for r in rows]))


def _run(conn: Connection, sql: str, use: Callable[[Any], T]) -> T:
    """``use`` on a cursor of the connection's driver; the driver's errors become
    SQLAlchemy's (IntegrityError...), as callers expect from ``conn.execute``."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    dbapi = conn.dialect.loaded_dbapi
    cursor = raw.cursor()
    try:
        return use(cursor)
    except dbapi.Error as e:
        raise DBAPIError.instance(sql, None, e, dbapi.Error) from e
    finally:
        cursor.close()
