"""Usage and ledger reports: what the console charts, the CSV exports and
`imagegate usage export` all read, with one set of filters.

Usage counts tasks by the UTC day they were created; images and credits count only
succeeded tasks (a failed task's hold was released, a running one has not been charged).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from imagegate.core.accounts.money import format_credits
from imagegate.core.errors import BadRequest
from imagegate.core.tasks.queries import TYPES
from imagegate.db.engine import Sessions
from imagegate.db.models import Credential, LedgerEntry, Task

DIMENSIONS = ("day", "credential", "model", "type")
DEFAULT_BY = ("day", "credential", "model", "type")
DAY = 86400
MAX_CHART_DAYS = 731
LEDGER_BATCH = 1000


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """``start`` inclusive, ``end`` exclusive, both Unix seconds; None is unbounded."""

    start: float | None = None
    end: float | None = None
    credential_id: str | None = None
    model: str | None = None
    type: str | None = None

    def query(self) -> dict[str, str]:
        """The filter as the query string that reproduces it (for links and exports)."""
        out: dict[str, str] = {}
        if self.start is not None:
            out["from"] = _day_text(self.start)
        if self.end is not None:
            out["to"] = _day_text(self.end - DAY)
        for name in ("credential_id", "model", "type"):
            if value := getattr(self, name):
                out["credential" if name == "credential_id" else name] = value
        return out


def _day_text(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


def parse_day(value: str, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(f"{field} must be a date like 2026-01-31; got {value!r}") from None


def usage_filter(params: Mapping[str, str | None]) -> UsageFilter:
    """From query parameters (or CLI options): ``from`` and ``to`` are UTC dates, both
    included; ``credential``, ``model`` and ``type`` narrow to one value each."""
    start = end = None
    if raw := (params.get("from") or "").strip():
        start = dt.datetime.combine(parse_day(raw, "from"), dt.time(), dt.UTC).timestamp()
    if raw := (params.get("to") or "").strip():
        end = dt.datetime.combine(parse_day(raw, "to"), dt.time(), dt.UTC).timestamp() + DAY
    if start is not None and end is not None and start >= end:
        raise BadRequest("from must not be after to")
    kind = (params.get("type") or "").strip() or None
    if kind is not None and kind not in TYPES:
        raise BadRequest(f"type must be one of {', '.join(TYPES)}; got {kind!r}")
    return UsageFilter(start=start, end=end,
                       credential_id=_text(params.get("credential"), "credential"),
                       model=_text(params.get("model"), "model"), type=kind)


def _text(value: str | None, field: str) -> str | None:
    value = (value or "").strip()
    if len(value) > 200:
        raise BadRequest(f"{field} must be at most 200 characters")
    return value or None


def parse_by(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``day,credential`` and the like: the columns to group by, in the order given."""
    if not value:
        return DEFAULT_BY
    parts = value.split(",") if isinstance(value, str) else list(value)
    by = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    unknown = [p for p in by if p not in DIMENSIONS]
    if unknown or not by:
        raise BadRequest(f"by: unknown column {unknown[0] if unknown else value!r}; "
                         f"choose from {', '.join(DIMENSIONS)}")
    return by


def _day_number(dialect: str) -> ColumnElement[int]:
    """Days since 1970-01-01 in UTC. SQLite truncates a positive REAL when cast to
    INTEGER; PostgreSQL would round, so it gets floor() first."""
    days = Task.created_at / DAY
    if dialect == "postgresql":
        return cast(func.floor(days), Integer)
    return cast(days, Integer)


def _images(dialect: str) -> ColumnElement[int]:
    """Images a succeeded task made: the length of ``response.data``."""
    if dialect == "postgresql":
        length = func.json_array_length(Task.response.op("->")("data"))
    else:
        length = func.json_array_length(Task.response, "$.data")
    return case((Task.status == "succeeded", func.coalesce(length, 0)), else_=0)


def narrow(stmt: Select[Any], f: UsageFilter, created: Any = Task.created_at) -> Select[Any]:
    if f.start is not None:
        stmt = stmt.where(created >= f.start)
    if f.end is not None:
        stmt = stmt.where(created < f.end)
    if f.credential_id:
        stmt = stmt.where(Task.credential_id == f.credential_id)
    if f.model:
        stmt = stmt.where(Task.model == f.model)
    if f.type:
        stmt = stmt.where(Task.type == f.type)
    return stmt


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: str | None
    credential_id: str | None
    credential_name: str | None
    model: str | None
    type: str | None
    tasks: int
    succeeded: int
    failed: int
    images: int
    credits: int  # micro-credits


async def usage(session: AsyncSession, f: UsageFilter, by: Sequence[str] = DEFAULT_BY
                ) -> list[UsageRow]:
    dialect = session.bind.dialect.name
    columns = {"day": _day_number(dialect), "credential": Task.credential_id,
               "model": Task.model, "type": Task.type}
    keys = [columns[name].label(name) for name in by]
    succeeded = Task.status == "succeeded"
    stmt = narrow(select(
        *keys, func.count().label("tasks"),
        func.sum(case((succeeded, 1), else_=0)).label("succeeded"),
        func.sum(case((Task.status == "failed", 1), else_=0)).label("failed"),
        func.sum(_images(dialect)).label("images"),
        func.sum(case((succeeded, Task.credits), else_=0)).label("credits"),
    ), f)
    if keys:
        stmt = stmt.group_by(*keys)
    rows = (await session.execute(stmt)).mappings().all()
    names = await credential_names(session, {r["credential"] for r in rows
                                             if "credential" in r})
    out = [UsageRow(
        day=_day_text(r["day"] * DAY) if "day" in r else None,
        credential_id=r.get("credential"), credential_name=names.get(r.get("credential") or ""),
        model=r.get("model"), type=r.get("type"), tasks=int(r["tasks"]),
        succeeded=int(r["succeeded"] or 0), failed=int(r["failed"] or 0),
        images=int(r["images"] or 0), credits=int(r["credits"] or 0)) for r in rows]
    out.sort(key=lambda u: (u.day or "", u.credential_name or "", u.credential_id or "",
                            u.model or "", u.type or ""))
    return out


async def credential_names(session: AsyncSession, ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(i for i in ids if i)
    if not wanted:
        return {}
    rows = await session.execute(select(Credential.id, Credential.name)
                                 .where(Credential.id.in_(wanted)))
    return {cid: name for cid, name in rows.all()}


def chart(rows: Sequence[UsageRow], f: UsageFilter) -> dict[str, Any]:
    """Rows grouped by day and model, as uPlot wants them: one x array of day starts
    (every day of the range, zeros included) and one y array per model and measure."""
    days = sorted({r.day for r in rows if r.day})
    first = f.start if f.start is not None else (_timestamp(days[0]) if days else None)
    last = f.end - DAY if f.end is not None else (_timestamp(days[-1]) if days else None)
    if first is None or last is None or last < first:
        return {"days": [], "models": {}}
    count = int((last - first) // DAY) + 1
    if count > MAX_CHART_DAYS:
        raise BadRequest(f"the charts show at most {MAX_CHART_DAYS} days; narrow from/to "
                         "(the CSV export has no such limit)")
    xs = [int(first + i * DAY) for i in range(count)]
    index = {_day_text(x): i for i, x in enumerate(xs)}
    models: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r.day not in index:
            continue
        series = models.setdefault(r.model or "", {"images": [0] * count,
                                                   "credits": [0.0] * count})
        series["images"][index[r.day]] += r.images
        series["credits"][index[r.day]] += r.credits / 1_000_000
    return {"days": xs, "models": dict(sorted(models.items()))}


def _timestamp(day: str) -> float:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), dt.UTC).timestamp()


def totals(rows: Iterable[UsageRow], key: str | None) -> list[dict[str, Any]]:
    """Rows summed by one attribute (``model`` or ``credential_id``; None sums them all
    into one), biggest spend first."""
    sums: dict[str, dict[str, Any]] = {}
    for r in rows:
        name = (getattr(r, key) if key else "") or ""
        entry = sums.setdefault(name, {"key": name, "name": r.credential_name, "tasks": 0,
                                       "succeeded": 0, "failed": 0, "images": 0,
                                       "credits": 0})
        for field in ("tasks", "succeeded", "failed", "images", "credits"):
            entry[field] += getattr(r, field)
    return sorted(sums.values(), key=lambda e: (-e["credits"], -e["images"], e["key"]))


def _safe(text: str | None) -> str:
    """Keep a spreadsheet from running a cell as a formula (a credential name is text
    anyone with self-service can choose)."""
    text = text or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def usage_csv(rows: Sequence[UsageRow], by: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head: list[str] = []
    for name in by:
        head += ["credential_id", "credential_name"] if name == "credential" else [name]
    writer.writerow([*head, "tasks", "succeeded", "failed", "images", "credits"])
    for r in rows:
        cells: list[Any] = []
        for name in by:
            if name == "credential":
                cells += [r.credential_id, _safe(r.credential_name)]
            else:
                cells.append(_safe(getattr(r, name)))
        writer.writerow([*cells, r.tasks, r.succeeded, r.failed, r.images,
                         format_credits(r.credits)])
    return out.getvalue()


LEDGER_HEAD = ("id", "time", "credential_id", "credential_name", "kind", "amount",
               "balance_after", "task_id", "model", "type")


async def ledger_csv(sessions: Sessions, f: UsageFilter) -> AsyncIterator[str]:
    """The ledger rows the filter selects, oldest first, as CSV text in batches; each
    batch is its own short read, so a long export holds no transaction open."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LEDGER_HEAD)
    yield out.getvalue()
    after = 0
    base = (select(LedgerEntry, Credential.name, Task.model, Task.type)
            .join(Credential, Credential.id == LedgerEntry.credential_id)
            .outerjoin(Task, Task.id == LedgerEntry.task_id))
    base = narrow(base, UsageFilter(f.start, f.end, None, f.model, f.type),
                  created=LedgerEntry.created_at)
    if f.credential_id:
        base = base.where(LedgerEntry.credential_id == f.credential_id)
    while True:
        async with sessions() as session:
            rows = (await session.execute(
                base.where(LedgerEntry.id > after).order_by(LedgerEntry.id)
                .limit(LEDGER_BATCH))).all()
        if not rows:
            return
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for entry, name, model, kind in rows:
            when = dt.datetime.fromtimestamp(entry.created_at, dt.UTC)
            writer.writerow([entry.id, when.isoformat(timespec="seconds").replace("+00:00", "Z"),
                             entry.credential_id, _safe(name), entry.kind,
                             format_credits(entry.amount), format_credits(entry.balance_after),
                             entry.task_id or "", _safe(model), kind or ""])
        after = rows[-1][0].id
        yield out.getvalue()
