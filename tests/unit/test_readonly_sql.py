"""Smoke SQL is refused at validate time unless it is plainly one read-only query."""

from __future__ import annotations

import pytest

from cutover.errors import RunbookError
from cutover.runbook import parse_runbook
from cutover.runbook.readonly_sql import read_only_problem
from tests.unit.runbook_texts import MINIMAL

READS = [
    "select count(*) > 0 from public.persons",
    "SELECT 1;",
    "select 1; -- the end",
    "(select 1) union (select 2)",
    "with recent as (select * from cases where opened > now() - interval '1 day') select count(*) from recent",
    "values (1)",
    "table public.persons",
    "show server_version",
    "select 'drop table x; delete from y' as text",
    "select $$ ; insert into t $$",
    "select $body$ update $body$",
    "select e'it\\'s; delete'",
    'select "update", "into" from t',
    "/* select /* nested */ delete */ select 1",
    "select x from t where a = $1",
    "select comment, share_count from notes",
]


@pytest.mark.parametrize("query", READS)
def test_read_only_queries_pass(query):
    assert read_only_problem(query) is None


REFUSED = [
    ("drop table public.persons", "a smoke query starts with SELECT, WITH, VALUES, TABLE or SHOW, not DROP"),
    ("select 1; drop table public.persons", "one statement only: a smoke query has no ';' between statements"),
    ("select 1;\nselect 2", "one statement only: a smoke query has no ';' between statements"),
    (
        "with gone as (delete from persons returning *) select count(*) from gone",
        "a smoke query only reads: DELETE is not allowed",
    ),
    ("with x as (insert into t values (1) returning 1) select 1", "a smoke query only reads: INSERT is not allowed"),
    ("select * into copy_of_persons from persons", "a smoke query only reads: INTO is not allowed"),
    ("select * from persons for update", "a smoke query only reads: UPDATE is not allowed"),
    ("select * from persons for share", "a smoke query only reads: FOR SHARE locks rows"),
    ("select nextval('persons_id_seq')", "a smoke query only reads: nextval() has side effects"),
    (
        "select pg_terminate_backend(pid) from pg_stat_activity",
        "a smoke query only reads: pg_terminate_backend() has side effects",
    ),
    (
        "select set_config('default_transaction_read_only', 'off', false)",
        "a smoke query only reads: set_config() has side effects",
    ),
    ("SELECT PG_SLEEP (3600)", "a smoke query only reads: pg_sleep() has side effects"),
    ("explain analyze delete from persons", "a smoke query starts with SELECT, WITH, VALUES, TABLE or SHOW, not EXPLAIN"),
    ("update persons set name = 'x'", "a smoke query starts with SELECT, WITH, VALUES, TABLE or SHOW, not UPDATE"),
    ("", "the query is empty"),
    ("-- nothing\n/* at all */", "the query is empty"),
    ("select 'not closed", "a string literal is not closed"),
    ("select $x$ not closed", "a dollar-quoted string is not closed"),
    ("select 1 /* not closed", "a /* comment is not closed"),
    ('select "not closed', "a quoted identifier is not closed"),
]


@pytest.mark.parametrize(("query", "reason"), REFUSED)
def test_what_is_not_plainly_one_read_is_refused_with_its_reason(query, reason):
    assert read_only_problem(query) == reason


def test_validate_refuses_a_writing_smoke_query_at_its_line():
    text = MINIMAL.replace('query: "select 1"', 'query: "drop table public.persons"')
    with pytest.raises(RunbookError) as caught:
        parse_runbook(text, "rb.yaml", {})
    assert [str(p) for p in caught.value.problems] == [
        "rb.yaml:27:51: applications[1].smoke[0].sql.query: "
        "a smoke query starts with SELECT, WITH, VALUES, TABLE or SHOW, not DROP"
    ]


def test_actions_outside_smoke_may_write():
    # freeze and finalize actions change things on purpose (a maintenance flag, a marker row)
    text = MINIMAL.replace(
        "    depends_on: [gis]\n",
        "    depends_on: [gis]\n"
        '    finalize: [{sql: {site: new, database: portal, query: "update settings set moved = true"}}]\n',
    )
    parse_runbook(text, "rb.yaml", {})
