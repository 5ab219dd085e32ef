"""Is a smoke check's SQL plainly one read-only query? A lexical check, not a parser.

Smoke checks run on the target before anyone has said go, as the migration role; the run
executes them in a read-only transaction, which is what really stops a write. This check
catches, at ``validate`` time, what is obviously not a single query that only reads. It
splits the text into words, skipping comments (``--``, nested ``/* */``), string literals
(``'...'``, ``E'...'``, dollar quotes ``$tag$...$tag$``) and quoted identifiers
(``"..."``), and refuses:

- an empty query, or more than one statement (a ``;`` with anything after it);
- a first word other than ``SELECT``, ``WITH``, ``VALUES``, ``TABLE`` or ``SHOW``
  (``EXPLAIN`` too: ``EXPLAIN ANALYZE`` runs the statement);
- anywhere, a word that writes or locks: ``INSERT``, ``UPDATE``, ``DELETE``, ``MERGE``
  (a data-modifying ``WITH``), ``INTO`` (``SELECT INTO`` creates a table), ``FOR UPDATE``
  and ``FOR SHARE`` (row locks);
- calls of well-known functions with side effects (``nextval``, ``setval``,
  ``set_config``, ``pg_terminate_backend``, large object writes, ``dblink``, advisory
  locks, ``pg_sleep``...).

It does not know what a user-defined function does, and a column literally named
``update`` must be written quoted (``"update"``).
"""

from __future__ import annotations

import re

FIRST_WORDS = frozenset({"select", "with", "values", "table", "show"})
# Inside a query that starts as a read, these are what writes: a data-modifying WITH, a
# SELECT INTO, a locking clause (FOR UPDATE, FOR NO KEY UPDATE; FOR SHARE, FOR KEY SHARE
# are found by their pair). Statements that write by their first word are refused by it.
WRITING_WORDS = frozenset({"insert", "update", "delete", "merge", "into"})
LOCKING_PAIRS = frozenset({("for", "share"), ("key", "share")})
SIDE_EFFECT_FUNCTIONS = frozenset(
    {
        "nextval",
        "setval",
        "set_config",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_promote",
        "lo_import",
        "lo_export",
        "lo_unlink",
        "lo_create",
        "lo_creat",
        "lo_from_bytea",
        "lo_put",
        "dblink",
        "dblink_exec",
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        "pg_advisory_lock",
        "pg_advisory_xact_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_file_write",
        "pg_file_unlink",
        "pg_file_rename",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_reset",
        "txid_current",
        "pg_current_xact_id",
        "pg_notify",
    }
)

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


class UnreadableSql(ValueError):
    pass


def tokens(query: str) -> list[str]:
    """The query's words (lowercased), ``;`` and ``(`` as tokens, with comments, strings
    and quoted identifiers left out. Raises UnreadableSql for an unterminated one."""
    out: list[str] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if query.startswith("--", i):
            end = query.find("\n", i)
            i = n if end < 0 else end + 1
        elif query.startswith("/*", i):
            i = _comment_end(query, i)
        elif c == "'" or (c in "eE" and query.startswith("'", i + 1) and not _in_word(query, i)):
            backslashes = c != "'"
            i = _string_end(query, i + (1 if backslashes else 0), backslashes)
            out.append("'")
        elif c == '"':
            end = query.find('"', i + 1)
            while end >= 0 and query.startswith('"', end + 1):
                end = query.find('"', end + 2)
            if end < 0:
                raise UnreadableSql("a quoted identifier is not closed")
            out.append('"')
            i = end + 1
        elif c == "$" and not _in_word(query, i) and (tag := DOLLAR_TAG.match(query, i)):
            close = query.find(tag.group(), tag.end())
            if close < 0:
                raise UnreadableSql("a dollar-quoted string is not closed")
            out.append("'")
            i = close + len(tag.group())
        elif c.isalpha() or c == "_":
            word = WORD.match(query, i)
            assert word is not None
            out.append(word.group().lower())
            i = word.end()
        else:
            if c in ";(":
                out.append(c)
            i += 1
    return out


def _in_word(query: str, i: int) -> bool:
    return i > 0 and (query[i - 1].isalnum() or query[i - 1] in "_$")


def _comment_end(query: str, i: int) -> int:
    depth, i = 0, i
    while i < len(query):
        if query.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif query.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise UnreadableSql("a /* comment is not closed")


def _string_end(query: str, i: int, backslashes: bool) -> int:
    i += 1  # past the opening quote
    while i < len(query):
        c = query[i]
        if backslashes and c == "\\":
            i += 2
        elif c == "'":
            if query.startswith("'", i + 1):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise UnreadableSql("a string literal is not closed")


def read_only_problem(query: str) -> str | None:
    """Why ``query`` is not plainly one read-only query, or None when it looks like one."""
    try:
        words = tokens(query)
    except UnreadableSql as exc:
        return str(exc)
    if ";" in words:
        if any(w != ";" for w in words[words.index(";") :]):
            return "one statement only: a smoke query has no ';' between statements"
        words = [w for w in words if w != ";"]
    statement = [w for w in words if w != "("]
    if not statement:
        return "the query is empty"
    if statement[0] not in FIRST_WORDS:
        return f"a smoke query starts with SELECT, WITH, VALUES, TABLE or SHOW, not {statement[0].upper()}"
    for index, word in enumerate(words):
        if word in WRITING_WORDS:
            return f"a smoke query only reads: {word.upper()} is not allowed"
        if index and (words[index - 1], word) in LOCKING_PAIRS:
            return f"a smoke query only reads: {words[index - 1].upper()} {word.upper()} locks rows"
        if word in SIDE_EFFECT_FUNCTIONS and index + 1 < len(words) and words[index + 1] == "(":
            return f"a smoke query only reads: {word}() has side effects"
    return None
