"""The YAML layer: bounded in size, depth, values and alias expansion; every character,
encoding, tag and alias problem a located one-line error, never a traceback."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest

from cutover.errors import RunbookError
from cutover.runbook import load_runbook, parse_runbook
from cutover.runbook.yaml_source import LIMITS
from tests.unit.runbook_texts import MINIMAL


def problems_of(text: str) -> list[str]:
    with pytest.raises(RunbookError) as caught:
        parse_runbook(text, "rb.yaml", {})
    found = [str(p) for p in caught.value.problems]
    assert all("\n" not in p for p in found), "every problem is one line"
    return found


def billion_laughs(levels: int = 9) -> str:
    """The classic: each level lists the one before nine times; 10^9 strings in 800 bytes.
    Level 4 is where the copies cross the alias limit: its sixth alias (line 5, column 49)."""
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_at_the_alias_that_crosses_the_limit():
    bomb = billion_laughs()
    assert len(bomb) < 800
    assert problems_of(bomb) == [
        f"rb.yaml:5:49: YAML aliases would expand the runbook by more than {LIMITS.max_alias_values} values; "
        "write the values out, or use fewer aliases"
    ]


def _limited_cli(path: str, memory: int) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "cutover", "validate", path],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=limit,
    )


def test_billion_laughs_through_the_cli_stays_within_a_small_memory_bound(tmp_path):
    """Before the limits this ran past 60 s and 4 GB; now it must end, exit 2 and say where,
    in a process that may not grow past 600 MiB of address space (interpreter included)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())
    done = _limited_cli(str(path), 600 << 20)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"{path}:5:49: YAML aliases would expand the runbook")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a:\n" + "".join("  " * i + "-\n" for i in range(1, 40)),
            f"rb.yaml:33:65: nested deeper than {LIMITS.max_depth} levels",
        ),
        ("a: " + "[" * 40 + "]" * 40 + "\n", f"rb.yaml:1:35: nested deeper than {LIMITS.max_depth} levels"),
        (
            "a: &a " + "[" * 20 + "1" + "]" * 20 + "\nb: " + "[" * 15 + "*a" + "]" * 15 + "\n",
            f"rb.yaml:2:19: this alias nests the runbook deeper than {LIMITS.max_depth} levels",
        ),
        (
            "a: [" + ", ".join(["1"] * (LIMITS.max_values + 10)) + "]\n",
            f"rb.yaml:1:{5 + 3 * (LIMITS.max_values - 3)}: the runbook holds more than {LIMITS.max_values} values",
        ),
        ("a: &a [1, *a]\n", "rb.yaml:1:11: alias *a is inside the value it refers to"),
        (MINIMAL + "---\nmore: 1\n", "rb.yaml:28:1: a runbook is one YAML document; this starts a second one"),
    ],
    ids=["block-depth", "flow-depth", "alias-depth", "too-many-values", "recursive-alias", "two-documents"],
)
def test_structure_past_a_limit_is_one_located_problem(text, expected):
    assert problems_of(text) == [expected]


def test_a_text_larger_than_the_limit_is_refused_before_parsing():
    assert problems_of("#" * (LIMITS.max_bytes + 1)) == [f"rb.yaml:1:1: the runbook is larger than {LIMITS.max_bytes >> 20} MiB"]


def test_raw_control_characters_are_each_located_and_named():
    text = MINIMAL.replace("cutover: test-estate", "cutover: test\0estate").replace(
        "zone: example.test.", "zone: exa\x1bmple.test."
    )
    assert problems_of(text) == [
        "rb.yaml:1:14: control character U+0000 (NUL) is not allowed in a runbook",
        "rb.yaml:14:12: control character U+001B (ESC) is not allowed in a runbook",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"test\\0estate"', "control character U+0000 (NUL) is not allowed in a value"),
        ('"test\\eestate"', "control character U+001B (ESC) is not allowed in a value"),
        ('"test\\u202eestate"', "character U+202E is not allowed in a value"),
        ('"test\\x7festate"', "control character U+007F (DEL) is not allowed in a value"),
    ],
    ids=["nul", "esc", "right-to-left-override", "del"],
)
def test_control_characters_smuggled_in_by_yaml_escapes_are_located(value, expected):
    assert problems_of(MINIMAL.replace("cutover: test-estate", f"cutover: {value}")) == [f"rb.yaml:1:10: cutover: {expected}"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!!python/object:os.system id", "YAML tag !!python/object:os.system is not supported"),
        ("!!binary aGVsbG8=", "YAML tag !!binary is not supported"),
        ("!local thing", "YAML tag !local is not supported"),
        ("!!set {a, b}", "YAML tag !!set is not supported here"),
        ("2027-13-45", "cannot read this value: month must be in 1..12"),
        ("*nowhere", "alias *nowhere refers to no anchor &nowhere before it"),
    ],
    ids=["python-object", "binary", "local-tag", "set", "impossible-date", "undefined-alias"],
)
def test_values_yaml_cannot_give_are_located(value, expected):
    assert problems_of(MINIMAL.replace("cutover: test-estate", f"cutover: {value}")) == [f"rb.yaml:1:10: cutover: {expected}"]


def test_an_aliased_value_is_checked_where_it_is_used_and_located_where_it_is_written():
    text = MINIMAL.replace("  - name: gis\n", "  - name: gis\n    freeze: &maintenance [{http: {url: 'ftp://gis'}}]\n")
    text = text.replace("    depends_on: [gis]\n", "    depends_on: [gis]\n    freeze: *maintenance\n")
    assert problems_of(text) == [
        "rb.yaml:18:40: applications[0].freeze[0].http.url: url must start with http:// or https:// and name a host",
        "rb.yaml:18:40: applications[1].freeze[0].http.url: url must start with http:// or https:// and name a host",
    ]


def test_aliases_within_the_limits_expand_like_written_values():
    text = MINIMAL.replace(
        "  - name: gis\n", "  - name: gis\n    freeze: &maintenance [{http: {url: 'http://gis/maintenance'}}]\n"
    )
    text = text.replace("    depends_on: [gis]\n", "    depends_on: [gis]\n    freeze: *maintenance\n")
    runbook = parse_runbook(text, "rb.yaml", {})
    assert runbook.applications[0].freeze == runbook.applications[1].freeze
    assert runbook.applications[1].freeze[0].http.url == "http://gis/maintenance"


def test_keys_that_are_not_plain_words_are_quoted_and_escaped_on_one_line():
    text = MINIMAL.replace("sites:\n", 'sites:\n  "bad\\nsite\\e[31m": {}\n  1: {}\n')
    found = problems_of(text)
    assert found == [
        "rb.yaml:6:3: sites: control character U+001B (ESC) is not allowed in a value",
        "rb.yaml:7:3: sites[\"1\"]: must be lowercase letters, digits, '-' or '_', starting with a letter",
    ]
    found = problems_of(MINIMAL.replace("sites:\n", 'sites:\n  "bad\\nsite": {}\n'))
    assert found[0] == "rb.yaml:6:3: sites[\"bad\\nsite\"]: must be lowercase letters, digits, '-' or '_', starting with a letter"


def test_a_collection_as_a_key_is_refused_and_the_rest_still_read():
    text = MINIMAL.replace("dns:\n", "? [a, b]\n: c\ndns:\n", 1)
    assert problems_of(text) == ["rb.yaml:11:3: a key must be a plain value"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"cutover: x\nsites: {caf\xe9: {}}\n", "rb.yaml:2:12: not UTF-8 text (byte 0xe9); save the runbook as UTF-8"),
        ("cutover: x\n".encode("utf-16"), "rb.yaml:1:1: the file is UTF-16 text; save the runbook as UTF-8"),
    ],
    ids=["latin-1-byte", "utf-16"],
)
def test_a_file_that_is_not_utf8_is_a_located_problem(tmp_path, data, expected):
    path = tmp_path / "rb.yaml"
    path.write_bytes(data)
    with pytest.raises(RunbookError) as caught:
        load_runbook(path)
    assert [str(p) for p in caught.value.problems] == [f"{tmp_path}/{expected}"]


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "rb.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_runbook(path, environ={}).cutover == "test-estate"


def test_a_directory_is_a_problem_not_a_traceback(tmp_path):
    with pytest.raises(RunbookError) as caught:
        load_runbook(tmp_path)
    assert str(caught.value.problems[0]) == f"{tmp_path}:1:1: cannot read the file: Is a directory"


def test_multiline_messages_from_yaml_syntax_errors_stay_on_one_line():
    found = problems_of(
        textwrap.dedent("""\
        cutover: "unclosed
        window: {}
        """)
    )
    assert len(found) == 1 and found[0].startswith("rb.yaml:")
