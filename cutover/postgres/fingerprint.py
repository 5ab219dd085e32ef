"""A database's fingerprint: what must be equal on the source and on its restored copy.

Per table the row count and an order-independent content hash, materialized views the
same, sequence states, large objects, and the set of schema objects. Everything is
computed server-side (no row reaches the client), in one REPEATABLE READ snapshot, with
one pass over each table.

How rows are hashed, and why it is comparable between two clusters:

* each row is rendered as text with its columns in *name* order (pg_restore keeps column
  order, but an inheritance child can come back with its columns reordered), under fixed
  settings (UTC, ISO dates, exact floats, hex bytea, ``search_path=pg_catalog`` so that
  reg* values are schema-qualified, C money locale);
* a 64-bit hash of that text, taken of its UTF-8 bytes whatever the database encoding (a
  move is a common moment to leave LATIN1), is summed as ``numeric`` (cannot overflow),
  which makes the hash independent of row order and of physical layout;
* a partitioned table is read once through its root (its partitions are not listed
  separately), a table with inheritance children is read ``ONLY``, so every row is counted
  exactly once on both sides.

The 64-bit hash is one of two *algorithms*, recorded in the fingerprint; two fingerprints
compare only when taken by the same one:

* ``hash64`` (the default where it can be had): PostgreSQL's own ``hashtextextended``, the
  hash behind hash partitioning, over the bytes of the text (``COLLATE "C"``). It costs a
  third of md5's time per row, which is most of a fingerprint's cost beyond reading the
  rows (bench/verification.py). It is taken of the UTF-8 bytes in a UTF-8 or single-byte
  database (there the UTF-8 bytes are read back as text of the database's encoding, which
  any byte sequence without NUL is); other encodings use ``md5-64``. Its values depend on the
  server's byte order, so a fingerprint carries a *probe* (the hash of a fixed text) and two
  fingerprints whose probes differ do not compare: a big-endian source and a little-endian
  target are told to use ``md5-64``, never reported equal or different by accident.
* ``md5-64``: the first 64 bits of md5, the same on every server.

Several connections can share the work (:func:`fingerprint_parallel`): one reads the
catalog and exports its snapshot, the others import it (``SET TRANSACTION SNAPSHOT``) and
read tables, largest first, so every part still describes one snapshot. A fingerprint can
also be taken in a snapshot exported by someone else, such as the transaction whose
snapshot ``pg_dump --snapshot`` reads (:mod:`cutover.postgres.dump`): then it describes
exactly the dumped data.

Schema objects are compared by kind, name and a detail string (owner, column types,
definitions as PostgreSQL renders them, effective privileges). View bodies are left out on
purpose: their rendering changes between major versions, and a migration often is a
version upgrade; a view's columns and types are compared instead. Objects that belong to an
extension are represented by the extension and its version.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg.pq import TransactionStatus

from cutover.errors import PermanentStepError, TransientStepError

log = structlog.get_logger()

# Rendering settings under which both clusters print the same value as the same text.
_RENDER_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
    "search_path": "pg_catalog",
    "statement_timeout": "0",
}

_USER_SCHEMA = (
    "{n}.nspname not in ('pg_catalog', 'information_schema') and {n}.nspname !~ '^pg_toast' and {n}.nspname !~ '^pg_temp_'"
)

MD5_64 = "md5-64"
HASH64 = "hash64"
ALGORITHMS = (HASH64, MD5_64)
# What a fingerprint without an algorithm (one persisted by an earlier version) was taken with.
_LEGACY_ALGORITHM = MD5_64
_PROBE_TEXT = "cutover fingerprint probe"

# The per-row 64-bit value, as SQL over {row} (the row rendered as text).
_ROW_HASH = {
    MD5_64: "('x' || left(md5(convert_to({row}::text, 'UTF8')), 16))::bit(64)::bigint",
    # the text already is UTF-8 (or SQL_ASCII: bytes as they are)
    HASH64: 'hashtextextended(({row}::text) collate "C", 0)',
    # a single-byte database: its UTF-8 bytes, read back as text of the database encoding
    HASH64 + "/single-byte": "hashtextextended(convert_from(convert_to({row}::text, 'UTF8'), {encoding}) collate \"C\", 0)",
}

_MAX_DETAIL_IN_MESSAGE = 160
_SEQUENCES_PER_QUERY = 200


@dataclass(frozen=True)
class Content:
    """Row count and order-independent content hash of a table or materialized view."""

    rows: int
    hash: str  # a decimal number, kept as text so JSON cannot round it


@dataclass(frozen=True)
class SequenceState:
    last_value: int
    is_called: bool


@dataclass(frozen=True)
class Fingerprint:
    """A database's fingerprint; ``to_dict``/``from_dict`` round-trip through JSON."""

    database: str
    tables: dict[str, Content]
    materialized_views: dict[str, Content | None]  # None: not populated
    sequences: dict[str, SequenceState]
    large_objects: Content
    schema_objects: list[tuple[str, str, str]]  # (kind, name, detail), sorted
    schema_hash: str
    duration_s: float = field(default=0.0, compare=False)
    algorithm: str = _LEGACY_ALGORITHM
    probe: str = ""  # the row hash of a fixed text on the server that took it (hash64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "tables": {k: {"rows": v.rows, "hash": v.hash} for k, v in self.tables.items()},
            "materialized_views": {
                k: None if v is None else {"rows": v.rows, "hash": v.hash} for k, v in self.materialized_views.items()
            },
            "sequences": {k: {"last_value": v.last_value, "is_called": v.is_called} for k, v in self.sequences.items()},
            "large_objects": {"count": self.large_objects.rows, "hash": self.large_objects.hash},
            "schema_objects": [list(o) for o in self.schema_objects],
            "schema_hash": self.schema_hash,
            "duration_s": self.duration_s,
            "algorithm": self.algorithm,
            "probe": self.probe,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        return cls(
            database=data["database"],
            tables={k: Content(v["rows"], v["hash"]) for k, v in data["tables"].items()},
            materialized_views={
                k: None if v is None else Content(v["rows"], v["hash"]) for k, v in data["materialized_views"].items()
            },
            sequences={k: SequenceState(v["last_value"], v["is_called"]) for k, v in data["sequences"].items()},
            large_objects=Content(data["large_objects"]["count"], data["large_objects"]["hash"]),
            schema_objects=[(o[0], o[1], o[2]) for o in data["schema_objects"]],
            schema_hash=data["schema_hash"],
            duration_s=data.get("duration_s", 0.0),
            algorithm=data.get("algorithm", _LEGACY_ALGORITHM),
            probe=data.get("probe", ""),
        )

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())


def fingerprint(conn: psycopg.Connection[Any], *, algorithm: str | None = None, snapshot: str | None = None) -> Fingerprint:
    """The fingerprint of the database ``conn`` is connected to.

    Runs in one REPEATABLE READ, READ ONLY transaction of its own when the connection is
    idle (autocommit or not), so all parts describe one snapshot; on a connection already
    inside a transaction it runs in a savepoint of that transaction and the rendering
    settings stay set until it ends. ``snapshot`` (an id from ``pg_export_snapshot()``,
    see :func:`cutover.postgres.dump.exported_snapshot`) makes it read that snapshot; the
    connection must then be idle. ``algorithm`` is ``"hash64"`` or ``"md5-64"`` (see the
    module docstring); None takes ``hash64`` where the database encoding allows it. To
    compare with an earlier fingerprint, pass that one's ``algorithm``.

    Needs read access to every table (a superuser or the owner). Raises TransientStepError
    when the connection breaks and PermanentStepError for anything else (a table it may
    not read, an algorithm the database cannot use), naming the database and the table.
    """
    database = conn.info.dbname
    start = time.perf_counter()
    current = "the catalog"
    try:
        idle = conn.info.transaction_status == TransactionStatus.IDLE
        if snapshot is not None and not idle:
            raise PermanentStepError(f"fingerprint of database {database}: a snapshot can only be imported by an idle connection")
        with conn.transaction():
            _begin(conn, idle, snapshot)
            row_hash, chosen, probe = _row_hash(conn, algorithm)
            relations = _relations(conn)
            contents: dict[str, Content | None] = {}
            for schema, table, kind, populated, columns in relations:
                current = f"{schema}.{table}"
                contents[current] = (
                    _content(conn, schema, table, columns, only=kind in ("r", "m"), row_hash=row_hash) if populated else None
                )
            current = "the catalog"
            taken = _assemble(conn, relations, contents, chosen, probe, start)
    except psycopg.OperationalError as exc:
        raise TransientStepError(
            f"fingerprint of database {database}: connection lost while reading {current}: {_first_line(exc)}"
        ) from exc
    except psycopg.Error as exc:
        raise PermanentStepError(f"fingerprint of database {database}: cannot read {current}: {_first_line(exc)}") from exc
    _log_taken(taken, workers=1)
    return taken


def fingerprint_parallel(
    connect: Callable[[], psycopg.Connection[Any]],
    workers: int,
    *,
    algorithm: str | None = None,
    snapshot: str | None = None,
) -> Fingerprint:
    """:func:`fingerprint`, with the tables read over ``workers`` connections at once.

    ``connect()`` opens a new connection to the database (the caller's endpoint and
    credentials; each is closed here). The first one reads the catalog and, unless a
    ``snapshot`` is given, exports its own; every connection reads in that one snapshot,
    so the result is the same as :func:`fingerprint`'s in that snapshot. Tables go out
    largest first. ``workers`` is capped by the number of tables; 1 is :func:`fingerprint`.
    Errors as :func:`fingerprint`.
    """
    workers = max(1, workers)
    coordinator = connect()
    database = coordinator.info.dbname
    start = time.perf_counter()
    current = "the catalog"
    try:
        if workers == 1:
            return fingerprint(coordinator, algorithm=algorithm, snapshot=snapshot)
        if coordinator.info.transaction_status != TransactionStatus.IDLE:
            raise PermanentStepError(f"fingerprint of database {database}: connect() must give an idle connection")
        with coordinator.transaction():
            _begin(coordinator, True, snapshot)
            shared = snapshot or str(coordinator.execute("select pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
            row_hash, chosen, probe = _row_hash(coordinator, algorithm)
            relations = _relations(coordinator)
            sizes = dict(coordinator.execute(_SIZES_QUERY).fetchall())
            work = sorted(
                ((s, t, k, c) for s, t, k, populated, c in relations if populated),
                key=lambda r: -int(sizes.get(f"{r[0]}.{r[1]}", 0)),
            )
            contents = _read_in_parallel(connect, database, shared, row_hash, work, min(workers, len(work)) or 1)
            for schema, table, _kind, populated, _ in relations:
                if not populated:
                    contents[f"{schema}.{table}"] = None
            current = "the catalog"
            taken = _assemble(coordinator, relations, contents, chosen, probe, start)
    except psycopg.OperationalError as exc:
        raise TransientStepError(
            f"fingerprint of database {database}: connection lost while reading {current}: {_first_line(exc)}"
        ) from exc
    except psycopg.Error as exc:
        raise PermanentStepError(f"fingerprint of database {database}: cannot read {current}: {_first_line(exc)}") from exc
    finally:
        coordinator.close()
    _log_taken(taken, workers=workers)
    return taken


def catalog_state(conn: psycopg.Connection[Any]) -> tuple[str, dict[str, SequenceState]]:
    """The schema hash and the sequence states exactly as :func:`fingerprint` records them,
    without reading any table: what the write proof of :mod:`cutover.postgres.freeze`
    compares. Runs in a REPEATABLE READ, READ ONLY transaction of its own on an idle
    connection (in a savepoint otherwise, as :func:`fingerprint`)."""
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    with conn.transaction():
        _begin(conn, idle, None)
        objects = sorted(_schema_objects(conn))
        sequences = _sequences(conn)
    return hashlib.sha256(json.dumps(objects).encode()).hexdigest(), sequences


def hash_probe(conn: psycopg.Connection[Any], algorithm: str = HASH64) -> str:
    """The probe a fingerprint by ``algorithm`` on this server would carry: equal probes on
    two servers mean their row hashes compare. Empty for ``md5-64`` (the same everywhere)."""
    if algorithm == MD5_64:
        return ""
    return str(conn.execute('select hashtextextended(%s::text collate "C", 0)::text', (_PROBE_TEXT,)).fetchone()[0])  # type: ignore[index]


def _begin(conn: psycopg.Connection[Any], own_transaction: bool, snapshot: str | None) -> None:
    """Open the snapshot (a transaction just begun by ``conn.transaction()``) and set the
    rendering settings for this transaction."""
    if own_transaction:
        conn.execute("set transaction isolation level repeatable read, read only")
        if snapshot is not None:
            # Must come before any query of the transaction.
            conn.execute(sql.SQL("set transaction snapshot {}").format(sql.Literal(snapshot)))
    for name, value in _RENDER_SETTINGS.items():
        conn.execute("select pg_catalog.set_config(%s, %s, true)", (name, value))


def _row_hash(conn: psycopg.Connection[Any], algorithm: str | None) -> tuple[str, str, str]:
    """The per-row SQL expression, the algorithm's name and its probe for this database."""
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise PermanentStepError(f"unknown fingerprint algorithm {algorithm!r}; one of {', '.join(ALGORITHMS)}")
    encoding, max_length = conn.execute(
        "select pg_encoding_to_char(encoding), pg_encoding_max_length(encoding) from pg_database where datname = current_database()"
    ).fetchone()  # type: ignore[misc]
    if algorithm == MD5_64 or (algorithm is None and encoding not in ("UTF8", "SQL_ASCII") and max_length != 1):
        return _ROW_HASH[MD5_64], MD5_64, ""
    if encoding in ("UTF8", "SQL_ASCII"):
        expression = _ROW_HASH[HASH64]
    elif max_length == 1:
        expression = _ROW_HASH[HASH64 + "/single-byte"].replace("{encoding}", sql.Literal(encoding).as_string(conn))
    else:
        raise PermanentStepError(
            f"fingerprint of database {conn.info.dbname}: algorithm {HASH64} needs a UTF8 or single-byte encoding, not {encoding}; "
            f"use {MD5_64}"
        )
    return expression, HASH64, hash_probe(conn, HASH64)


_SIZES_QUERY = f"""
    select n.nspname || '.' || c.relname,
           case when c.relkind = 'p' then (select coalesce(sum(pg_table_size(relid)), 0) from pg_partition_tree(c.oid))
                else pg_table_size(c.oid) end
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'm') and not c.relispartition and c.relpersistence <> 't' and {_USER_SCHEMA.format(n="n")}
"""


def _read_in_parallel(
    connect: Callable[[], psycopg.Connection[Any]],
    database: str,
    snapshot: str,
    row_hash: str,
    work: list[tuple[str, str, str, list[str]]],
    workers: int,
) -> dict[str, Content | None]:
    """The contents of the tables in ``work`` (largest first), read by ``workers``
    connections that import ``snapshot``; the first error stops the others."""
    todo: queue.SimpleQueue[tuple[str, str, str, list[str]]] = queue.SimpleQueue()
    for item in work:
        todo.put(item)
    contents: dict[str, Content | None] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        current = "a connection"
        try:
            with connect() as conn, conn.transaction():
                _begin(conn, True, snapshot)
                while not failures:
                    try:
                        schema, table, kind, columns = todo.get_nowait()
                    except queue.Empty:
                        return
                    current = f"{schema}.{table}"
                    content = _content(conn, schema, table, columns, only=kind in ("r", "m"), row_hash=row_hash)
                    with lock:
                        contents[current] = content
        except psycopg.OperationalError as exc:
            failures.append(
                TransientStepError(
                    f"fingerprint of database {database}: connection lost while reading {current}: {_first_line(exc)}"
                )
            )
        except psycopg.Error as exc:
            failures.append(PermanentStepError(f"fingerprint of database {database}: cannot read {current}: {_first_line(exc)}"))
        except BaseException as exc:  # TransientStepError from connect(), or anything else: the caller's
            failures.append(exc)

    threads = [threading.Thread(target=worker, name=f"cutover-fingerprint-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return contents


def _assemble(
    conn: psycopg.Connection[Any],
    relations: list[tuple[str, str, str, bool, list[str]]],
    contents: dict[str, Content | None],
    algorithm: str,
    probe: str,
    start: float,
) -> Fingerprint:
    """The rest of the fingerprint, read on ``conn`` in the same snapshot, around the
    table contents already read."""
    tables: dict[str, Content] = {}
    matviews: dict[str, Content | None] = {}
    for schema, table, kind, _populated, _columns in relations:
        name = f"{schema}.{table}"
        if kind == "m":
            matviews[name] = contents[name]
        else:
            content = contents[name]
            assert content is not None  # tables are always populated
            tables[name] = content
    sequences = _sequences(conn)
    large_objects = _large_objects(conn)
    objects = sorted(_schema_objects(conn))
    schema_hash = hashlib.sha256(json.dumps(objects).encode()).hexdigest()
    duration = round(time.perf_counter() - start, 3)
    return Fingerprint(
        conn.info.dbname, tables, matviews, sequences, large_objects, objects, schema_hash, duration, algorithm, probe
    )


def _log_taken(taken: Fingerprint, *, workers: int) -> None:
    log.info(
        "fingerprint_taken",
        database=taken.database,
        tables=len(taken.tables),
        rows=taken.total_rows,
        sequences=len(taken.sequences),
        large_objects=taken.large_objects.rows,
        schema_objects=len(taken.schema_objects),
        algorithm=taken.algorithm,
        workers=workers,
        duration_s=taken.duration_s,
    )


def compare(source: Fingerprint, target: Fingerprint) -> list[str]:
    """Human-readable differences of ``target`` from ``source``, each naming the table or
    object and what differs; an empty list when they are equal. Fingerprints taken by
    different algorithms, or by ``hash64`` on servers that hash differently, do not
    compare: the one difference is then that."""
    if source.algorithm != target.algorithm:
        return [
            f"fingerprints not comparable: the source's was taken by {source.algorithm}, the target's by "
            f"{target.algorithm}; take the target's with algorithm={source.algorithm}"
        ]
    if source.probe != target.probe:
        return [
            f"fingerprints not comparable: the two servers' {source.algorithm} hashes differ (probe {source.probe} != "
            f"{target.probe}; a different byte order?); take both with algorithm={MD5_64}"
        ]
    out: list[str] = []
    out += _compare_contents("table", source.tables, target.tables)
    out += _compare_contents("materialized view", source.materialized_views, target.materialized_views)
    for name in sorted(source.sequences.keys() | target.sequences.keys()):
        a, b = source.sequences.get(name), target.sequences.get(name)
        if a is None:
            out.append(f"sequence only on target: {name}")
        elif b is None:
            out.append(f"sequence missing on target: {name}")
        elif a.last_value != b.last_value:
            out.append(f"sequence {name}: last_value {a.last_value} != {b.last_value}")
        elif a.is_called != b.is_called:
            out.append(f"sequence {name}: is_called {a.is_called} != {b.is_called}")
    lo_a, lo_b = source.large_objects, target.large_objects
    if lo_a.rows != lo_b.rows:
        out.append(f"large objects: count {lo_a.rows} != {lo_b.rows}")
    elif lo_a.hash != lo_b.hash:
        out.append(f"large objects: content differs ({lo_a.rows} on both)")
    if source.schema_hash != target.schema_hash:
        out += _compare_objects(source.schema_objects, target.schema_objects)
    return out


def _populated(content: Content | None) -> str:
    return "not populated" if content is None else "populated"


def _compare_contents(kind: str, source: Mapping[str, Content | None], target: Mapping[str, Content | None]) -> list[str]:
    out = []
    for name in sorted(source.keys() | target.keys()):
        if name not in target:
            out.append(f"{kind} missing on target: {name}")
        elif name not in source:
            out.append(f"{kind} only on target: {name}")
        else:
            a, b = source[name], target[name]
            if a is None or b is None:
                if (a is None) != (b is None):
                    out.append(f"{kind} {name}: {_populated(a)} != {_populated(b)}")
            elif a.rows != b.rows:
                out.append(f"{kind} {name}: rows {a.rows} != {b.rows}")
            elif a.hash != b.hash:
                out.append(f"{kind} {name}: content differs ({a.rows} rows on both)")
    return out


def _compare_objects(source: list[tuple[str, str, str]], target: list[tuple[str, str, str]]) -> list[str]:
    a = {(k, n): d for k, n, d in source}
    b = {(k, n): d for k, n, d in target}
    out = []
    for key in sorted(a.keys() | b.keys()):
        kind, name = key
        if key not in b:
            out.append(f"schema object missing on target: {kind} {name}")
        elif key not in a:
            out.append(f"schema object only on target: {kind} {name}")
        elif a[key] != b[key]:
            out.append(f"schema object differs: {kind} {name}: {_describe_difference(a[key], b[key])}")
    return out


_DETAIL_PART = re.compile(r"^([a-z ]+?)(=|: )(.*)$", re.DOTALL)


def _describe_difference(source: str, target: str) -> str:
    """What differs between two detail strings, part by part ("owner=a; privileges=...;
    columns: ..."), naming list items that are only on one side."""

    def parts(detail: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for i, part in enumerate(detail.split("; ")):
            match = _DETAIL_PART.match(part)
            out[match.group(1) if match else f"#{i}"] = match.group(3) if match else part
        return out

    a, b = parts(source), parts(target)
    found = []
    for key in list(a) + [k for k in b if k not in a]:
        va, vb = a.get(key), b.get(key)
        if va == vb:
            continue
        label = "" if key.startswith("#") else f"{key} "
        if va is None or vb is None:
            found.append(f"{label}{_short(va or vb or '')} only on {'target' if va is None else 'source'}")
            continue
        sep = ", " if ", " in va + vb else ","
        items_a, items_b = va.split(sep), vb.split(sep)
        missing = [x for x in items_a if x not in items_b]
        extra = [x for x in items_b if x not in items_a]
        if (missing or extra) and len(items_a) + len(items_b) > 2:
            said = []
            if missing:
                said.append(f"missing on target: {_short(sep.join(missing))}")
            if extra:
                said.append(f"only on target: {_short(sep.join(extra))}")
            found.append(f"{label}" + ", ".join(said))
        else:
            found.append(f"{label}{_short(va)} != {_short(vb)}")
    return "; ".join(found) if found else f"{_short(source)} != {_short(target)}"


def _short(detail: str) -> str:
    return detail if len(detail) <= _MAX_DETAIL_IN_MESSAGE else detail[: _MAX_DETAIL_IN_MESSAGE - 3] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- data ----------------------------------------------------------------------------


def _relations(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str, bool, list[str]]]:
    """Tables to read (partition roots, plain and unlogged tables) and materialized views,
    with their column names in name order."""
    query = f"""
        select n.nspname, c.relname, c.relkind, c.relispopulated,
               coalesce(array_agg(a.attname::text order by a.attname::text)
                        filter (where a.attname is not null), '{{}}')
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where c.relkind in ('r', 'p', 'm') and not c.relispartition and c.relpersistence <> 't'
          and {_USER_SCHEMA.format(n="n")}
        group by n.nspname, c.relname, c.relkind, c.relispopulated
        order by 1, 2
    """
    return [(r[0], r[1], r[2], r[3], list(r[4])) for r in conn.execute(query).fetchall()]


def _content(conn: psycopg.Connection[Any], schema: str, table: str, columns: list[str], *, only: bool, row_hash: str) -> Content:
    row = sql.SQL("row({})").format(sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns))
    query = sql.SQL("select count(*), coalesce(sum(" + row_hash + "), 0)::text from {only}{table} t").format(
        row=row, only=sql.SQL("only " if only else ""), table=sql.Identifier(schema, table)
    )
    count, digest = conn.execute(query).fetchone()  # type: ignore[misc]
    return Content(int(count), str(digest))


def _sequences(conn: psycopg.Connection[Any]) -> dict[str, SequenceState]:
    names = conn.execute(
        f"""select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind = 'S' and c.relpersistence <> 't' and {_USER_SCHEMA.format(n="n")} order by 1, 2"""
    ).fetchall()
    states: dict[str, SequenceState] = {}
    for start in range(0, len(names), _SEQUENCES_PER_QUERY):
        batch = names[start : start + _SEQUENCES_PER_QUERY]
        query = sql.SQL(" union all ").join(
            sql.SQL("select {}::text, last_value, is_called from {}").format(sql.Literal(f"{s}.{n}"), sql.Identifier(s, n))
            for s, n in batch
        )
        for name, last_value, is_called in conn.execute(query).fetchall():
            states[name] = SequenceState(int(last_value), bool(is_called))
    return states


def _large_objects(conn: psycopg.Connection[Any]) -> Content:
    count, digest = conn.execute(
        """select count(*), coalesce(sum(('x' || left(md5(m.oid::text || ':' || md5(lo_get(m.oid))), 16))::bit(64)::bigint), 0)::text
           from pg_largeobject_metadata m"""
    ).fetchone()  # type: ignore[misc]
    return Content(int(count), str(digest))


# --- schema objects --------------------------------------------------------------------

# Each query yields (kind, name, detail). Objects that belong to an extension are left
# out (the extension and its version stand for them): pg_depend deptype 'e'.
_NOT_EXTENSION_MEMBER = (
    "not exists (select 1 from pg_depend d where d.classid = '{catalog}'::regclass and d.objid = {oid} and d.deptype = 'e')"
)

# Effective privileges, with NULL (the built-in default) spelled out, so that an explicit
# ACL equal to the default and NULL compare equal; grantors are left out on purpose
# (pg_restore grants as the owner).
_GRANT_ITEM = (
    "case when e.grantee = 0 then 'PUBLIC' else pg_get_userbyid(e.grantee) end"
    " || ':' || e.privilege_type || case when e.is_grantable then '*' else '' end"
)
_ACL = (
    "(select coalesce(string_agg(x.item, ',' order by x.item), '')"
    " from (select distinct " + _GRANT_ITEM + " as item"
    " from aclexplode(coalesce({acl}, acldefault('{kind}', {owner}))) e) x)"
)


def _acl(acl: str, kind: str, owner: str) -> str:
    return _ACL.format(acl=acl, kind=kind, owner=owner)


_RELKIND = (
    "case c.relkind when 'r' then 'table' when 'p' then 'partitioned table' when 'v' then 'view' "
    "when 'm' then 'materialized view' when 'f' then 'foreign table' when 'S' then 'sequence' "
    "when 'i' then 'index' when 'I' then 'partitioned index' when 'c' then 'composite type' else c.relkind::text end"
)

_SCHEMA_QUERIES: list[str] = [
    # schemas
    f"""select 'schema', n.nspname, 'owner=' || pg_get_userbyid(n.nspowner)
               || '; privileges=' || {_acl("n.nspacl", "n", "n.nspowner")}
        from pg_namespace n where {_USER_SCHEMA.format(n="n")}
          and {_NOT_EXTENSION_MEMBER.format(catalog="pg_namespace", oid="n.oid")}""",
    # extensions
    """select 'extension', e.extname, 'version=' || e.extversion || '; schema=' || n.nspname
        from pg_extension e join pg_namespace n on n.oid = e.extnamespace""",
    # tables, views, materialized views, foreign tables, sequences, composite types
    f"""select {_RELKIND}, n.nspname || '.' || c.relname,
               'owner=' || pg_get_userbyid(c.relowner)
               || case when c.relpersistence = 'u' then '; unlogged' else '' end
               || case when c.relrowsecurity then '; row security' else '' end
               || case when c.relforcerowsecurity then ' forced' else '' end
               || coalesce('; partition of ' || (select pn.nspname || '.' || p.relname || ' ' || pg_get_expr(c.relpartbound, c.oid)
                                                  from pg_inherits i join pg_class p on p.oid = i.inhparent
                                                  join pg_namespace pn on pn.oid = p.relnamespace
                                                  where i.inhrelid = c.oid and c.relispartition), '')
               || coalesce('; partitioned by ' || pg_get_partkeydef(c.oid), '')
               || case when c.relkind = 'c' then '' else '; privileges=' || {_acl("c.relacl", "r", "c.relowner")} end
               || '; columns: ' || coalesce((
                    select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                        || case when a.attnotnull then ' not null' else '' end
                        || coalesce(case when a.attgenerated = 's' then ' generated ' else ' default ' end
                                    || pg_get_expr(ad.adbin, ad.adrelid), '')
                        || case when a.attidentity in ('a', 'd') then ' identity' else '' end
                        || coalesce(' collate ' || nullif(co.collname, 'default'), '')
                        || case when a.attacl is not null then ' privileges=' || {_acl("a.attacl", "c", "c.relowner")} else '' end,
                        ', ' order by a.attname)
                    from pg_attribute a
                    left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
                    left join pg_collation co on co.oid = a.attcollation and a.attcollation <> 0
                    where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '')
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p', 'v', 'm', 'f', 'c') and c.relpersistence <> 't' and {_USER_SCHEMA.format(n="n")}
          and {_NOT_EXTENSION_MEMBER.format(catalog="pg_class", oid="c.oid")}""",
    # sequences' definitions (their values are compared apart)
    f"""select 'sequence', n.nspname || '.' || c.relname,
               'owner=' || pg_get_userbyid(c.relowner) || '; ' || format_type(s.seqtypid, null)
               || ' start ' || s.seqstart || ' increment ' || s.seqincrement || ' min ' || s.seqmin
               || ' max ' || s.seqmax || ' cache ' || s.seqcache || case when s.seqcycle then ' cycle' else '' end
               || coalesce('; owned by ' || (select tn.nspname || '.' || t.relname || '.' || a.attname
                                             from pg_depend d join pg_class t on t.oid = d.refobjid
                                             join pg_namespace tn on tn.oid = t.relnamespace
                                             join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid
                                             where d.classid = 'pg_class'::regclass and d.objid = c.oid
                                               and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
                                             limit 1), '')
               || '; privileges=' || {_acl("c.relacl", "s", "c.relowner")}
        from pg_sequence s join pg_class c on c.oid = s.seqrelid join pg_namespace n on n.oid = c.relnamespace
        where c.relpersistence <> 't' and {_USER_SCHEMA.format(n="n")}
          and {_NOT_EXTENSION_MEMBER.format(catalog="pg_class", oid="c.oid")}""",
    # functions, procedures, aggregates
    f"""select case p.prokind when 'p' then 'procedure' when 'a' then 'aggregate' when 'w' then 'window function'
                   else 'function' end,
               n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               'owner=' || pg_get_userbyid(p.proowner) || '; language=' || l.lanname
               || coalesce('; returns ' || pg_get_function_result(p.oid), '')
               || '; ' || p.provolatile::text || case when p.prosecdef then ' security definer' else '' end
               || case when p.proisstrict then ' strict' else '' end
               || coalesce('; config=' || array_to_string(p.proconfig, ','), '')
               || '; body md5=' || md5(coalesce(p.prosrc, '') || '/' || coalesce(p.probin, ''))
               || '; privileges=' || {_acl("p.proacl", "f", "p.proowner")}
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace join pg_language l on l.oid = p.prolang
        where {_USER_SCHEMA.format(n="n")} and {_NOT_EXTENSION_MEMBER.format(catalog="pg_proc", oid="p.oid")}""",
    # triggers (internal ones, e.g. for foreign keys, carry OIDs in their names)
    f"""select 'trigger', n.nspname || '.' || c.relname || '.' || t.tgname,
               pg_get_triggerdef(t.oid) || '; enabled=' || t.tgenabled::text
        from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
        where not t.tgisinternal and {_USER_SCHEMA.format(n="n")}""",
    # enums, domains, ranges, base types (composite types are listed with the relations)
    f"""select case t.typtype when 'e' then 'enum' when 'd' then 'domain' when 'r' then 'range'
                   when 'm' then 'multirange' else 'type' end,
               n.nspname || '.' || t.typname,
               'owner=' || pg_get_userbyid(t.typowner)
               || case t.typtype
                    when 'e' then '; labels: ' || (select string_agg(e.enumlabel, ', ' order by e.enumsortorder)
                                                  from pg_enum e where e.enumtypid = t.oid)
                    when 'd' then '; over ' || format_type(t.typbasetype, t.typtypmod)
                                  || case when t.typnotnull then ' not null' else '' end
                                  || coalesce(' default ' || t.typdefault, '')
                    when 'r' then '; subtype ' || (select format_type(r.rngsubtype, null) from pg_range r where r.rngtypid = t.oid)
                    else '' end
               || '; privileges=' || {_acl("t.typacl", "T", "t.typowner")}
        from pg_type t join pg_namespace n on n.oid = t.typnamespace
        where t.typtype in ('e', 'd', 'r', 'm', 'b') and t.typcategory <> 'A' and {_USER_SCHEMA.format(n="n")}
          and {_NOT_EXTENSION_MEMBER.format(catalog="pg_type", oid="t.oid")}""",
    # indexes
    f"""select 'index', n.nspname || '.' || i.relname, pg_get_indexdef(i.oid)
        from pg_index x join pg_class i on i.oid = x.indexrelid join pg_namespace n on n.oid = i.relnamespace
        where {_USER_SCHEMA.format(n="n")} and {_NOT_EXTENSION_MEMBER.format(catalog="pg_class", oid="i.oid")}""",
    # constraints on tables and domains
    f"""select 'constraint',
               n.nspname || '.' || coalesce(c.relname, t.typname) || '.' || k.conname,
               pg_get_constraintdef(k.oid) || case when k.convalidated then '' else ' not valid' end
        from pg_constraint k join pg_namespace n on n.oid = k.connamespace
        left join pg_class c on c.oid = k.conrelid left join pg_type t on t.oid = k.contypid
        where {_USER_SCHEMA.format(n="n")} and {_NOT_EXTENSION_MEMBER.format(catalog="pg_constraint", oid="k.oid")}""",
    # row level security policies
    f"""select 'policy', n.nspname || '.' || c.relname || '.' || p.polname,
              p.polcmd::text || case when p.polpermissive then ' permissive' else ' restrictive' end
              || '; to ' || (select string_agg(x.name, ',' order by x.name)
                             from (select case when r = 0 then 'PUBLIC' else pg_get_userbyid(r)::text end as name
                                   from unnest(p.polroles) r) x)
              || coalesce('; using ' || pg_get_expr(p.polqual, p.polrelid), '')
              || coalesce('; check ' || pg_get_expr(p.polwithcheck, p.polrelid), '')
       from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
       where {_USER_SCHEMA.format(n="n")}""",
    # rules other than the ones that make a view a view
    f"""select 'rule', n.nspname || '.' || c.relname || '.' || r.rulename, pg_get_ruledef(r.oid)
        from pg_rewrite r join pg_class c on c.oid = r.ev_class join pg_namespace n on n.oid = c.relnamespace
        where r.rulename <> '_RETURN' and {_USER_SCHEMA.format(n="n")}""",
    # default privileges
    """select 'default privileges',
              pg_get_userbyid(d.defaclrole) || coalesce(' in ' || n.nspname, '') || ' on ' || d.defaclobjtype::text,
              (select string_agg(x.item, ',' order by x.item)
               from (select distinct """
    + _GRANT_ITEM
    + """ as item from aclexplode(d.defaclacl) e) x)
       from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace""",
    # comments on anything in the database (not on the database itself: the importer's
    # marker lives there), identified the way pg_identify_object spells it
    """select 'comment', o.type || ' ' || o.identity, md5(d.description)
        from pg_description d, lateral pg_identify_object(d.classoid, d.objoid, d.objsubid) o
        where d.classoid <> 'pg_database'::regclass
          and (o.schema is null or (o.schema not in ('pg_catalog', 'information_schema') and o.schema !~ '^pg_toast'))
          and (d.objoid >= 16384 or (d.classoid = 'pg_namespace'::regclass and d.objoid = 2200))
          and not exists (select 1 from pg_depend x where x.classid = d.classoid and x.objid = d.objoid and x.deptype = 'e')""",
]


def _schema_objects(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    objects: list[tuple[str, str, str]] = []
    for query in _SCHEMA_QUERIES:
        objects.extend((str(k), str(n), "" if d is None else str(d)) for k, n, d in conn.execute(query).fetchall())
    return objects
