"""The embedded adapter: one SQLite table of JSON documents per collection (sqlite3 + JSON1).

Every field a filter, sort or index touches is read through `_key(path)`, a JSON1 expression that maps a
document value onto SQLite's storage classes so that SQLite's own comparisons behave like MongoDB's:

    number -> INTEGER/REAL    string -> TEXT    object/array -> BLOB of its JSON text
    false -> x'00'    true -> x'01'    null or missing -> x''

so booleans never equal numbers, a number bound only ranges over numbers (numbers < TEXT < BLOB), null and
missing compare equal (and collide in a unique index, as in MongoDB), and the key is never SQL NULL, which
keeps `<>` two-valued.

Sorting follows MongoDB's cross-type order, which the key alone does not (null sorts first, objects, arrays
and booleans after strings): a field sorts by `(_rank(path), _key(path))`. An index stores every field as
that same pair (and ends with `id`, the sort's tie-breaker), and each condition states the rank its operand
implies (a tautology: a scalar's key belongs to one rank), so an equality prefix, a range and the sort all
read one index in order: no sort of every match, and `skip` walks index entries only. Indexes are built on
the very same expressions, which SQLite must see spelled identically to use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import msgspec

from parley_common.storage._validation import (
    Condition,
    check_doc,
    check_fields,
    check_id,
    check_index,
    check_limit,
    check_name,
    check_skip,
    check_sort,
    parse_filter,
)
from parley_common.storage.port import (
    ASCENDING,
    Doc,
    DuplicateKeyError,
    Filter,
    Index,
    StorageError,
    StorageUnavailable,
)

# Index names carry the version of their column expressions: a changed expression gets a new index name
# (built by `CREATE INDEX IF NOT EXISTS` on existing databases) and the old versions are dropped.
_INDEX_PREFIX = "ix2"
_OLD_INDEX_PREFIXES = ("ix",)
_COMPARE = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_decode = msgspec.json.Decoder(Doc).decode
_encode = msgspec.json.Encoder().encode


class SqliteStore:
    """A `DocumentStore` in one SQLite file; `":memory:"` gives a private throwaway database.

    Statements run on the event loop's thread, not on a worker thread: a statement on these small JSON
    documents takes 20-50 us, while handing it to a thread and back (aiosqlite, as this store did before)
    took 130 us at best and several milliseconds when the two cores are busy (the worker thread and then the
    loop must each be scheduled again); it was the largest cost of a conference command. Two things could
    still make a statement slow, and neither is left on the loop:

    - Lock waits. Several stores (or processes) may share a file: WAL lets readers run beside the single
      writer, but a writer may find another connection holding the write lock. Statements on the loop do not
      wait (busy timeout 0); one that finds the database locked is run again on this store's worker thread
      with the full busy timeout, and until that thread is idle every statement goes there too, so they keep
      their order and the connection is never used by two threads at once.
    - WAL checkpoints, which copy the log into the database and fsync it. Automatic checkpoints (which run
      inside the commit that crosses the threshold) are off; every `CHECKPOINT_EVERY` writes a passive
      checkpoint runs on a second connection in a thread, beside the writers.

    Durability is unchanged: WAL with `synchronous=NORMAL`, every write one statement in autocommit mode (so
    atomic on its own) and committed before the call returns. A committed write survives a crash of the
    process; an OS crash or power loss may lose the last commits before a checkpoint (as before).
    """

    CHECKPOINT_EVERY = 1000

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._collections: dict[str, SqliteCollection] = {}
        self._indexes: set[tuple[str, Index]] = set()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._in_worker = 0
        self._writes = 0
        self._checkpointing: asyncio.Future[None] | None = None

    async def start(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        self._conn = conn
        try:
            with _translate():
                conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
                conn.execute("PRAGMA journal_mode=WAL")
                # Durable across application crashes; only an OS crash may lose the latest commits.
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint=0")
                conn.execute("PRAGMA busy_timeout=0")
        except StorageError:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        self._collections.clear()
        self._indexes.clear()
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await self._checkpointing
        if conn is not None:
            # Closing the last connection checkpoints the log into the database: not on the loop.
            await asyncio.get_running_loop().run_in_executor(self._worker, conn.close)
        self._worker.shutdown(wait=False)

    async def ping(self) -> None:
        await self._read("SELECT 1", ())

    async def collection(self, name: str, indexes: Sequence[Index] = ()) -> SqliteCollection:
        coll = self._collections.get(check_name(name))
        if coll is None:
            schema = "(id TEXT PRIMARY KEY, doc TEXT NOT NULL)"
            await self._ddl(f'CREATE TABLE IF NOT EXISTS "{name}" {schema}')
            coll = self._collections[name] = SqliteCollection(self, name)
        for index in indexes:
            if (name, index) not in self._indexes:
                await self._create_index(name, index)
                self._indexes.add((name, index))
        return coll

    async def _create_index(self, table: str, index: Index) -> None:
        check_index(index)
        if index.fields == ("_id",):
            return  # the primary key is that index already
        fields = ",".join(index.fields)
        name = f"{_INDEX_PREFIX}:{table}:{fields}"
        old = [f"{prefix}:{table}:{fields}" for prefix in _OLD_INDEX_PREFIXES]
        marks = ", ".join("?" for _ in (name, *old))
        sql = f'SELECT "unique" FROM pragma_index_list(?) WHERE name IN ({marks})'
        rows = await self._read(sql, (table, name, *old))
        if any(bool(row[0]) != index.unique for row in rows):
            # MongoDB refuses to redefine an index too; silently keeping the old one would hide the mistake.
            raise StorageError(f"index {name!r} exists with unique={not index.unique}")
        unique = "UNIQUE " if index.unique else ""
        await self._ddl(f'CREATE {unique}INDEX IF NOT EXISTS "{name}" ON "{table}" ({_index_columns(index)})')
        for stale in old:
            # Built by an earlier version on other expressions: no query can use it any more.
            await self._ddl(f'DROP INDEX IF EXISTS "{stale}"')

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageUnavailable(f"SQLite store {self.path!r} is not open")
        return self._conn

    async def _run(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """All rows of one statement: on the loop, or on the worker thread while the database is locked."""
        conn = self._db()
        if not self._in_worker:
            try:
                with _translate():
                    return conn.execute(sql, params).fetchall()
            except StorageUnavailable as exc:
                if not _locked(exc):
                    raise
        self._in_worker += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._worker, self._run_waiting, conn, sql, params)
        finally:
            self._in_worker -= 1

    def _run_waiting(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
        """On the worker thread: the statement, waiting up to the busy timeout for the lock."""
        with _translate():
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.execute("PRAGMA busy_timeout=0")

    async def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return await self._run(sql, params)

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        """Run one data-changing statement; the number of rows it changed (`RETURNING` counts them)."""
        rows = await self._run(f"{sql} RETURNING 1", params)
        self._wrote()
        return len(rows)

    async def _ddl(self, sql: str) -> None:
        await self._run(sql, ())
        self._wrote()

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes >= self.CHECKPOINT_EVERY and self._checkpointing is None and self.path != ":memory:":
            self._writes = 0
            loop = asyncio.get_running_loop()
            self._checkpointing = loop.run_in_executor(None, _checkpoint, self.path, self._busy_timeout)
            self._checkpointing.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = None
        if not done.cancelled():
            done.exception()  # a failed checkpoint is tried again after the next CHECKPOINT_EVERY writes


def _checkpoint(path: str, busy_timeout: float) -> None:
    """Copy the write-ahead log into the database without blocking writers (on a thread)."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        conn.close()


def _locked(exc: StorageUnavailable) -> bool:
    cause = exc.__cause__
    code = getattr(cause, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteCollection:
    def __init__(self, store: SqliteStore, name: str) -> None:
        self.name = name
        self._store = store

    async def insert(self, doc: Doc) -> None:
        doc_id = check_doc(doc)
        await self._store._write(f'INSERT INTO "{self.name}" (id, doc) VALUES (?, ?)', (doc_id, _dump(doc)))

    async def get(self, id: str) -> Doc | None:
        rows = await self._store._read(f'SELECT doc FROM "{self.name}" WHERE id = ?', (check_id(id),))
        return _decode(rows[0][0]) if rows else None

    async def find(
        self,
        where: Filter | None = None,
        *,
        sort: Sequence[tuple[str, int]] = (),
        limit: int | None = None,
        skip: int = 0,
    ) -> list[Doc]:
        conditions = parse_filter(where)
        clause, params = _conditions(conditions)
        order = _order_by(conditions, check_sort(sort))
        check_limit(limit)
        check_skip(skip)
        sql = f'SELECT doc FROM "{self.name}" WHERE {clause} ORDER BY {order}'
        if limit is not None or skip:
            # SQLite takes OFFSET only after a LIMIT; -1 is its "no limit".
            sql += " LIMIT ? OFFSET ?"
            params.extend((-1 if limit is None else limit, skip))
        return [_decode(row[0]) for row in await self._store._read(sql, params)]

    async def count(self, where: Filter | None = None) -> int:
        clause, params = _where(where)
        rows = await self._store._read(f'SELECT COUNT(*) FROM "{self.name}" WHERE {clause}', params)
        return int(rows[0][0])

    async def replace(self, doc: Doc, *, where: Filter | None = None, upsert: bool = False) -> bool:
        doc_id = check_doc(doc)
        clause, params = _where(where)
        if upsert:
            # One statement: insert, or on an `_id` conflict overwrite only if the stored row matches `where`
            # (unqualified `doc` in the DO UPDATE clause is the stored row). No change -> False.
            sql = (
                f'INSERT INTO "{self.name}" (id, doc) VALUES (?, ?) '
                f"ON CONFLICT (id) DO UPDATE SET doc = excluded.doc WHERE {clause}"
            )
            return await self._store._write(sql, [doc_id, _dump(doc), *params]) == 1
        sql = f'UPDATE "{self.name}" SET doc = ? WHERE id = ? AND {clause}'
        return await self._store._write(sql, [_dump(doc), doc_id, *params]) == 1

    async def update(self, id: str, fields: Doc, *, where: Filter | None = None) -> bool:
        check_id(id)
        check_fields(fields)
        clause, params = _where(where)
        # json(?) inserts the value as JSON (object, list, true...) rather than as a quoted string.
        setters = ", ".join("?, json(?)" for _ in fields)
        values = [arg for key, value in fields.items() for arg in (f"$.{key}", _dump(value))]
        sql = f'UPDATE "{self.name}" SET doc = json_set(doc, {setters}) WHERE id = ? AND {clause}'
        return await self._store._write(sql, [*values, id, *params]) == 1

    async def update_many(self, where: Filter, fields: Doc) -> int:
        check_fields(fields)
        clause, params = _where(where)
        setters = ", ".join("?, json(?)" for _ in fields)
        values = [arg for key, value in fields.items() for arg in (f"$.{key}", _dump(value))]
        sql = f'UPDATE "{self.name}" SET doc = json_set(doc, {setters}) WHERE {clause}'
        return await self._store._write(sql, [*values, *params])

    async def delete(self, id: str, *, where: Filter | None = None) -> bool:
        check_id(id)
        clause, params = _where(where)
        sql = f'DELETE FROM "{self.name}" WHERE id = ? AND {clause}'
        return await self._store._write(sql, [id, *params]) == 1

    async def delete_many(self, where: Filter) -> int:
        clause, params = _where(where)
        return await self._store._write(f'DELETE FROM "{self.name}" WHERE {clause}', params)


def _key(path: str) -> str:
    """The comparable SQL expression for a validated field path (see the module docstring)."""
    at = f"'$.{path}'"
    blob = f"CAST(json_extract(doc, {at}) AS BLOB)"
    return (
        f"CASE json_type(doc, {at}) WHEN 'true' THEN x'01' WHEN 'false' THEN x'00' "
        f"WHEN 'object' THEN {blob} WHEN 'array' THEN {blob} ELSE ifnull(json_extract(doc, {at}), x'') END"
    )


def _rank(path: str) -> str:
    """MongoDB's cross-type order: null/missing (0) < numbers and strings (1; the key orders numbers before
    strings) < objects (2) < arrays (3) < booleans (4)."""
    at = f"'$.{path}'"
    return (
        f"CASE ifnull(json_type(doc, {at}), 'null') WHEN 'null' THEN 0 WHEN 'object' THEN 2 "
        f"WHEN 'array' THEN 3 WHEN 'true' THEN 4 WHEN 'false' THEN 4 ELSE 1 END"
    )


def _rank_of(value: Any) -> int:
    """The rank of the documents a scalar filter operand can match (its key is only ever theirs)."""
    if value is None:
        return 0
    return 4 if isinstance(value, bool) else 1


def _index_columns(index: Index) -> str:
    """A field is indexed as its (rank, key) pair, what `_order_by` sorts by and `_term` constrains, so an
    equality prefix and the sort read one index in order. A non-unique index ends with `id`, the sort's
    final tie-breaker, so not even ties are sorted apart (a unique index has no ties)."""
    columns = [
        column
        for path in index.fields
        for column in (("id",) if path == "_id" else (_rank(path), _key(path)))
    ]
    if not index.unique and "_id" not in index.fields:
        columns.append("id")
    return ", ".join(columns)


def _order_by(conditions: Sequence[Condition], sort: Sequence[tuple[str, int]]) -> str:
    """The ORDER BY for validated sort keys, leaving out the terms the filter holds constant: SQLite reads an
    index in order only if each ORDER BY term after its equality prefix is the next index column, and it
    does not see that an expression the WHERE pins to one value is constant (a field's rank when a
    condition implies it, its key too under `$eq`). Dropping a constant term changes no order."""
    pinned_rank = {c.path for c in conditions if len(_implied_ranks(c)) == 1}
    pinned_key = {c.path for c in conditions if c.op == "$eq"}
    terms: list[str] = []
    for path, direction in sort:
        way = "ASC" if direction == ASCENDING else "DESC"
        if path == "_id":
            terms.append(f"id {way}")
            continue
        if path not in pinned_rank:
            terms.append(f"{_rank(path)} {way}")
        if path not in pinned_key:
            terms.append(f"{_key(path)} {way}")
    return ", ".join(terms)


def _where(where: Filter | None) -> tuple[str, list[Any]]:
    """The SQL condition for a filter (never empty) and its bound parameters."""
    return _conditions(parse_filter(where))


def _conditions(conditions: Sequence[Condition]) -> tuple[str, list[Any]]:
    terms: list[str] = []
    params: list[Any] = []
    for cond in conditions:
        terms.append(_term(cond))
        params.extend(map(_arg, cond.value) if cond.op == "$in" else [_arg(cond.value)])
    return " AND ".join(terms) or "1", params


def _implied_ranks(cond: Condition) -> list[int]:
    """The ranks of the values a condition can match, when it names them ($ne matches any)."""
    if cond.op == "$ne":
        return []
    # Range bounds are numbers or strings: rank 1.
    return sorted({_rank_of(v) for v in cond.value}) if cond.op == "$in" else [_rank_of(cond.value)]


def _term(cond: Condition) -> str:
    if cond.path == "_id" and _all_strings(cond.value):
        # Ids are always strings, so string operands can use the primary key itself (an index, not a scan);
        # other operands keep the JSON expression, where a number never equals a string.
        return _compare("id", cond)
    ranks = _implied_ranks(cond)
    if not ranks:
        return _compare(_key(cond.path), cond)
    # The operand's key belongs to one rank only, so stating that rank changes nothing that matches, but
    # lets the (rank, key) index columns serve the condition (and a sort after it).
    rank = f"= {ranks[0]}" if len(ranks) == 1 else f"IN ({', '.join(map(str, ranks))})"
    return f"{_rank(cond.path)} {rank} AND {_compare(_key(cond.path), cond)}"


def _compare(key: str, cond: Condition) -> str:
    if cond.op == "$in":
        return f"{key} IN ({', '.join('?' for _ in cond.value)})"
    term = f"{key} {_COMPARE[cond.op]} ?"
    if cond.op in ("$eq", "$ne"):
        return term
    # Type bracketing: keep a number bound among numbers (below TEXT), a string bound among strings.
    number = isinstance(cond.value, int | float)
    if cond.op in ("$gt", "$gte"):
        ceiling = "''" if number else "x''"
        return f"{term} AND {key} < {ceiling}"
    return term if number else f"{term} AND {key} >= ''"


def _all_strings(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    )


def _arg(value: Any) -> Any:
    """A filter scalar as `_key` represents it."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    return value


def _dump(value: Any) -> str:
    # TEXT, not BLOB: JSON1 rejects BLOB arguments.
    return _encode(value).decode()


@contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        # The only constraints in these tables are the primary key and unique indexes.
        raise DuplicateKeyError(str(exc)) from exc
    except sqlite3.OperationalError as exc:
        # Locked beyond the busy timeout, unreadable or unwritable file.
        raise StorageUnavailable(str(exc)) from exc
    except sqlite3.Error as exc:
        raise StorageError(str(exc)) from exc
