"""Benchmark: proving a database arrived intact, against the cheapest look at the same data.

On every database of the sandbox's old site, interleaved, one pass each per run:

- ``fingerprint``: :func:`cutover.postgres.fingerprint.fingerprint`, one connection, its
  default row hash (``hash64``);
- ``fingerprint md5-64``: the same with the md5 row hash (what every fingerprint used before);
- ``fingerprint xN``: :func:`cutover.postgres.fingerprint.fingerprint_parallel`, N
  connections sharing one exported snapshot (``--workers``, default 2);
- ``count(*)``: ``select count(*)`` of every table the fingerprint reads, one connection;
- ``write proof``: :func:`cutover.postgres.freeze.change_marker`, what the source check
  before the DNS switch takes when nothing was written (the full fingerprint otherwise).

MB/s is the table data the fingerprint reads (``pg_table_size``: heap and TOAST, no indexes)
over the median time of the whole estate.

    .venv/bin/cutover sandbox up --scale 20 --dir .sandbox-bench
    .venv/bin/python bench/verification.py --dir .sandbox-bench [--runs 3] [--workers 2]
"""

from __future__ import annotations

import argparse
from typing import Any

import measure
import sandbox_tools
from psycopg import sql

from cutover.postgres import fingerprint, freeze
from cutover.postgres.endpoint import connect

_TABLES = """
    select n.nspname, c.relname, c.relkind, pg_table_size(c.oid)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'm') and not c.relispartition and c.relpersistence <> 't'
      and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'
"""
_PARTITION_BYTES = "select coalesce(sum(pg_table_size(relid)), 0) from pg_partition_tree(%s::regclass) where isleaf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".sandbox-bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-load", type=float, default=None)
    args = parser.parse_args()
    measure.quiet_logs()
    info = sandbox_tools.load(args.dir)
    source = sandbox_tools.pg_endpoint(info.onprem)
    with connect(source, "postgres", autocommit=True) as admin:
        server_version = admin.info.server_version
        databases = [
            r[0]
            for r in admin.execute(
                "select datname from pg_database where not datistemplate and datname <> 'postgres' order by 1"
            ).fetchall()
        ]
    tables: dict[str, list[tuple[str, str, str]]] = {}
    data_bytes = 0
    for db in databases:
        with connect(source, db, autocommit=True) as conn:
            rows = conn.execute(_TABLES).fetchall()
            tables[db] = [(s, t, k) for s, t, k, _ in rows]
            for s, t, kind, size in rows:
                data_bytes += int(conn.execute(_PARTITION_BYTES, (f'"{s}"."{t}"',)).fetchone()[0] if kind == "p" else size)

    def fingerprint_all(algorithm: str | None = None) -> dict[str, Any]:
        rows = 0
        for db in databases:
            with connect(source, db, autocommit=True) as conn:
                rows += fingerprint.fingerprint(conn, algorithm=algorithm).total_rows
        return {"rows": rows}

    def fingerprint_parallel_all() -> dict[str, Any]:
        rows = 0
        for db in databases:
            taken = fingerprint.fingerprint_parallel(lambda db=db: connect(source, db, autocommit=True), args.workers)
            rows += taken.total_rows
        return {"rows": rows}

    def count_all() -> dict[str, Any]:
        rows = 0
        for db in databases:
            with connect(source, db, autocommit=True) as conn:
                for schema, table, kind in tables[db]:
                    only = sql.SQL("only " if kind == "r" else "")
                    query = sql.SQL("select count(*) from {}{}").format(only, sql.Identifier(schema, table))
                    rows += conn.execute(query).fetchone()[0]
        return {"rows": rows}

    def write_proof_all() -> None:
        with connect(source, "postgres", autocommit=True) as admin:
            for db in databases:
                freeze.change_marker(admin, db)

    commands: dict[str, measure.Timed] = {
        "fingerprint": fingerprint_all,
        "fingerprint md5-64": lambda: fingerprint_all(fingerprint.MD5_64),
    }
    if hasattr(fingerprint, "fingerprint_parallel") and args.workers > 1:
        commands[f"fingerprint x{args.workers}"] = fingerprint_parallel_all
    commands |= {"count(*)": count_all, "write proof": write_proof_all}
    series = measure.interleave(commands, runs=args.runs, max_load=args.max_load)
    ratios = [
        ("fingerprint", "count(*)"),
        ("fingerprint md5-64", "count(*)"),
        ("fingerprint", "fingerprint md5-64"),
        ("write proof", "fingerprint"),
    ]
    if f"fingerprint x{args.workers}" in series:
        ratios += [(f"fingerprint x{args.workers}", "count(*)"), (f"fingerprint x{args.workers}", "fingerprint")]
    measure.report(
        "verification",
        series,
        ratios,
        rate_bytes=data_bytes,
        notes={
            "databases": databases,
            "tables": sum(len(t) for t in tables.values()),
            "table_bytes": data_bytes,
            "scale": info.scale,
            "server_version": server_version,
        },
    )


if __name__ == "__main__":
    main()
