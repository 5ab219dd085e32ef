"""YAML with positions and limits: every value and every key remembers where it was written,
and no input, however hostile, costs more than a bounded amount of time and memory.

We build plain Python values straight from libyaml's event stream (not from its composer,
whose nodes share aliased subtrees and whose Cython code recurses), iteratively, keeping a
side table from key paths (``("applications", 2, "depends_on")``) to (line, column), so any
later error, structural or semantic, can point at the exact spot in the file.

Limits (``Limits``): the text's size, the nesting depth, the number of values, and how many
values aliases may add. An alias is expanded by copying what its anchor built, and its cost
is known before the copy, so a "billion laughs" is refused at the first alias that would
cross a limit, after a few thousand values at most. Characters YAML refuses (NUL, other
control characters) are located before parsing; control characters that YAML escapes can
smuggle into a value (``"\\0"``, ``"\\e"``) and text-direction overrides are located after.

Environment interpolation (``${NAME}`` / ``${NAME:-default}``) happens here too, on scalar
strings, so errors in interpolated values still point at the right place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

# libyaml when present: ten times faster on a large estate, same events and marks
PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# What YAML itself refuses anywhere in a stream (YAML 1.1 "printable"): C0 controls but tab
# and line breaks, DEL, C1 controls but NEL, surrogates, U+FFFE/U+FFFF.
UNREADABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# What a value may not hold even when YAML escapes let it in: control characters but tab and
# newline, and the invisible text-direction controls that make text read other than it runs.
UNSAFE_IN_VALUE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")

STR, MAP, SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str", "timestamp"))


@dataclass(frozen=True)
class Limits:
    """Generous for any real estate (the demo's applications take about 2.5 KiB and 80
    values each, so these allow well over a thousand); small enough that the worst input is
    refused in well under a second and a few hundred MiB."""

    max_bytes: int = 4 << 20
    max_depth: int = 32
    max_values: int = 100_000
    max_alias_values: int = 50_000  # values that aliases add, in total
    max_reported: int = 20  # unreadable characters listed before giving up


LIMITS = Limits()


@dataclass
class Located:
    """A parsed document and where each part of it stands in the file."""

    data: Any
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of the value at ``path``, or of its key with ``key``;
        falls back to the nearest enclosing value that has a position."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return (1, 1)


class YamlProblem(Exception):
    def __init__(self, line: int, column: int, path: Path_, message: str) -> None:
        super().__init__(message)
        self.line, self.column, self.path, self.message = line, column, path, message


class UnreadableYaml(Exception):
    """The text cannot be read as one YAML document within the limits; ``problems`` says
    where and why (several when several characters are unreadable)."""

    def __init__(self, problems: list[YamlProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def load(text: str, environ: Mapping[str, str] | None = None, limits: Limits = LIMITS) -> tuple[Located, list[YamlProblem]]:
    """Parse YAML text. What makes the text unreadable (syntax, forbidden characters, a
    limit) raises UnreadableYaml; duplicate keys, unsupported tags, unsafe characters in a
    value and unresolvable ``${...}`` references are returned as problems next to the
    (best-effort) document."""
    env = os.environ if environ is None else environ
    if len(text) > limits.max_bytes:
        raise UnreadableYaml([YamlProblem(1, 1, (), f"the runbook is larger than {limits.max_bytes >> 20} MiB")])
    unreadable = list(_unreadable_characters(text, limits.max_reported))
    if unreadable:
        raise UnreadableYaml(unreadable)
    builder = _Builder(env, limits)
    try:
        for event in yaml.parse(text, Loader=PARSER):
            builder.feed(event)
    except yaml.MarkedYAMLError as exc:
        raise UnreadableYaml([_syntax_problem(exc)]) from None
    except yaml.YAMLError as exc:  # a reader error without a mark: the scan above should catch these
        raise UnreadableYaml([YamlProblem(1, 1, (), f"YAML syntax error: {exc}")]) from None
    return builder.located, builder.problems


def _syntax_problem(exc: yaml.MarkedYAMLError) -> YamlProblem:
    mark = exc.problem_mark or exc.context_mark
    if exc.context == "while scanning a simple key" and exc.context_mark:
        mark = exc.context_mark  # the key missing its ':' is where the user must look
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    reason = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        reason = f"{exc.problem} ({exc.context})"
    return YamlProblem(line, column, (), f"YAML syntax error: {reason}")


def _unreadable_characters(text: str, most: int) -> Iterator[YamlProblem]:
    for found, match in enumerate(UNREADABLE.finditer(text), start=1):
        line, column = _line_column(text, match.start())
        yield YamlProblem(line, column, (), f"{describe_character(match.group())} is not allowed in a runbook")
        if found == most:
            return


def _line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``, counting line breaks as YAML does."""
    line, start = 1, 0
    for match in LINE_BREAK.finditer(text, 0, index):
        line, start = line + 1, match.end()
    return line, index - start + 1


def describe_character(char: str) -> str:
    names = {"\0": " (NUL)", "\x1b": " (ESC)", "\x7f": " (DEL)"}
    code = f"U+{ord(char):04X}{names.get(char, '')}"
    return f"control character {code}" if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F else f"character {code}"


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}``; ``$$`` is a literal ``$``.
    Raises KeyError(NAME) for an unset variable without a default."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        raise KeyError(name)

    return INTERPOLATION.sub(substitute, text)


# --- building values from events ------------------------------------------------------

_SKIP = object()  # a node that is parsed but not kept (a duplicate key's value, a merge key's)
_BAD = object()  # a scalar that could not be read (its problem is already reported)


@dataclass
class _Anchor:
    value: Any
    path: Path_  # where the anchored node was built
    entries: tuple[int, int]  # the range of the builder's positions that lie inside it
    values: int  # how many values it holds, itself included
    depth: int  # how many levels it nests, itself included (a scalar: 0)


@dataclass
class _Collection:
    path: Path_
    value: Any  # dict or list, or _SKIP while skipping
    start: tuple[int, int]
    anchor: str | None
    first_entry: int  # index into the builder's positions where this collection's begin
    first_count: int  # the builder's value count once it was counted
    as_key: bool = False  # a collection written where a key belongs: discarded, not a value
    key: Any = None  # mappings: the key waiting for its value
    key_given: bool = False  # mappings: False while a key is expected
    skip_value: bool = False  # mappings: discard the current key's value
    deepest: int = 0  # how many levels the deepest child nests


class _Builder:
    """Feeds on parser events; ``located`` and ``problems`` hold the result."""

    def __init__(self, env: Mapping[str, str], limits: Limits) -> None:
        self.env = env
        self.limits = limits
        self.located = Located(data=None)
        self.problems: list[YamlProblem] = []
        self.stack: list[_Collection] = []
        self.anchors: dict[str, _Anchor | None] = {}  # None: anchored collection still open
        self.entries: list[tuple[Path_, tuple[int, int], bool]] = []  # every position, in order
        self.count = 0
        self.alias_count = 0
        self.documents = 0
        self.resolver = yaml.resolver.Resolver()
        self.constructor = yaml.SafeLoader("")

    def feed(self, event: yaml.Event) -> None:
        mark = event.start_mark
        pos = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise UnreadableYaml([YamlProblem(*pos, (), "a runbook is one YAML document; this starts a second one")])
        elif isinstance(event, yaml.ScalarEvent):
            self._count(1, pos)
            path, skip = self._slot()
            value = _SKIP if skip else self._scalar(event, path, pos)
            self._place(value, path, pos, event.anchor, 1, 0, len(self.entries))
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event.anchor or "", pos)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self._count(1, pos)
            self._open(event, pos)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            self._close()

    def _count(self, values: int, pos: tuple[int, int]) -> None:
        self.count += values
        if self.count > self.limits.max_values:
            raise UnreadableYaml([YamlProblem(*pos, (), f"the runbook holds more than {self.limits.max_values} values")])

    def _expecting_key(self) -> bool:
        top = self.stack[-1] if self.stack else None
        return top is not None and isinstance(top.value, dict) and not top.key_given

    def _slot(self) -> tuple[Path_, bool]:
        """The path of the next node, and whether it is discarded. A key's path is its
        mapping's: keys are placed by ``_key``, not as values."""
        if not self.stack:
            return (), False
        top = self.stack[-1]
        if top.value is _SKIP:
            return top.path, True
        if isinstance(top.value, list):
            return (*top.path, len(top.value)), False
        if not top.key_given:
            return top.path, False
        return (*top.path, top.key), top.skip_value

    def _refuse_key(self, pos: tuple[int, int]) -> None:
        """A collection where a key belongs: reported; its value is read and discarded."""
        top = self.stack[-1]
        self.problems.append(YamlProblem(*pos, top.path, "a key must be a plain value"))
        top.key, top.key_given, top.skip_value = None, True, True

    def _open(self, event: yaml.CollectionStartEvent, pos: tuple[int, int]) -> None:
        if len(self.stack) + 1 > self.limits.max_depth:
            raise UnreadableYaml([YamlProblem(*pos, (), f"nested deeper than {self.limits.max_depth} levels")])
        as_key = self._expecting_key()
        if as_key:
            self._refuse_key(pos)
            path, skip = self.stack[-1].path, True
        else:
            path, skip = self._slot()
        mapping = isinstance(event, yaml.MappingStartEvent)
        if not skip and event.tag not in (None, "!", MAP if mapping else SEQ):
            self.problems.append(YamlProblem(*pos, path, f"YAML tag {_short_tag(event.tag)} is not supported here"))
        if event.anchor is not None:
            self.anchors[event.anchor] = None
        value: Any = _SKIP if skip else ({} if mapping else [])
        self.stack.append(_Collection(path, value, pos, event.anchor, len(self.entries), self.count, as_key))

    def _close(self) -> None:
        done = self.stack.pop()
        depth = done.deepest + 1
        if done.anchor is not None:
            values = self.count - done.first_count + 1
            self.anchors[done.anchor] = _Anchor(
                None if done.value is _SKIP else done.value, done.path, (done.first_entry, len(self.entries)), values, depth
            )
        if self.stack:
            self.stack[-1].deepest = max(self.stack[-1].deepest, depth)
        if not done.as_key:
            self._attach(done.value, done.path, done.start)

    def _scalar(self, event: yaml.ScalarEvent, path: Path_, pos: tuple[int, int]) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
        if tag not in SCALAR_TAGS:
            self.problems.append(YamlProblem(*pos, path, f"YAML tag {_short_tag(tag)} is not supported"))
            return _BAD
        node = yaml.ScalarNode(tag, event.value, style=event.style)  # the marks only serve PyYAML's own messages
        try:
            value = self.constructor.yaml_constructors[tag](self.constructor, node)
        except (ValueError, OverflowError, yaml.YAMLError) as exc:
            reason = str(exc).split("\n")[0]
            if "digits" in reason:  # Python refuses to convert integers longer than 4300 digits
                reason = "too many digits"
            self.problems.append(YamlProblem(*pos, path, f"cannot read this value: {reason}"))
            return _BAD
        if isinstance(value, str) and "$" in value:
            try:
                value = interpolate(value, self.env)
            except KeyError as exc:
                name = exc.args[0]
                self.problems.append(
                    YamlProblem(
                        *pos, path, f"environment variable {name} is not set (set it, or give a default: ${{{name}:-value}})"
                    )
                )
        if isinstance(value, str):
            unsafe = UNSAFE_IN_VALUE.search(value)
            if unsafe:
                self.problems.append(YamlProblem(*pos, path, f"{describe_character(unsafe.group())} is not allowed in a value"))
                return _BAD
        return value

    def _alias(self, name: str, pos: tuple[int, int]) -> None:
        if name not in self.anchors:
            self._count(1, pos)
            path, skip = self._slot()
            self.problems.append(YamlProblem(*pos, path, f"alias *{name} refers to no anchor &{name} before it"))
            self._place(_SKIP if skip else _BAD, path, pos, None, 1, 0, len(self.entries))
            return
        anchor = self.anchors[name]
        if anchor is None:
            raise UnreadableYaml([YamlProblem(*pos, (), f"alias *{name} is inside the value it refers to")])
        self.alias_count += anchor.values
        if self.alias_count > self.limits.max_alias_values:
            raise UnreadableYaml(
                [
                    YamlProblem(
                        *pos,
                        (),
                        f"YAML aliases would expand the runbook by more than {self.limits.max_alias_values} values; "
                        "write the values out, or use fewer aliases",
                    )
                ]
            )
        self._count(anchor.values, pos)
        if len(self.stack) + anchor.depth > self.limits.max_depth:
            raise UnreadableYaml(
                [YamlProblem(*pos, (), f"this alias nests the runbook deeper than {self.limits.max_depth} levels")]
            )
        if self._expecting_key() and isinstance(anchor.value, (dict, list)):
            self._refuse_key(pos)
            return
        path, skip = self._slot()
        if skip:
            self._place(_SKIP, path, pos, None, anchor.values, anchor.depth, len(self.entries))
            return
        first = len(self.entries)
        if not self._expecting_key():
            cut = len(anchor.path)
            start, end = anchor.entries
            for inside, where, is_key in self.entries[start:end]:
                if len(inside) > cut:
                    self._record((*path, *inside[cut:]), where, is_key)
        self._place(_copy(anchor.value), path, pos, None, anchor.values, anchor.depth, first)

    def _place(
        self, value: Any, path: Path_, pos: tuple[int, int], anchor: str | None, values: int, depth: int, first_entry: int
    ) -> None:
        """A complete node that is not a collection just closed (a scalar, an alias copy):
        a key, a value, or the whole document."""
        if anchor is not None:
            kept = None if value is _SKIP or value is _BAD else value
            self.anchors[anchor] = _Anchor(kept, path, (first_entry, len(self.entries)), values, depth)
        if self._expecting_key():
            self._key(value, pos)
            return
        if self.stack:
            self.stack[-1].deepest = max(self.stack[-1].deepest, depth)
        self._attach(None if value is _BAD else value, path, pos)

    def _key(self, key: Any, pos: tuple[int, int]) -> None:
        top = self.stack[-1]
        top.key, top.key_given, top.skip_value = None, True, True
        if key is _SKIP or key is _BAD:
            return
        if key == "<<":
            self.problems.append(YamlProblem(*pos, top.path, "YAML merge keys (<<) are not supported"))
            return
        key = key if isinstance(key, str) else _key_text(key)
        child = (*top.path, key)
        if key in top.value:
            first = self.located.keys[child]
            self.problems.append(YamlProblem(*pos, child, f"duplicate key '{key}' (first given at line {first[0]})"))
            return
        top.key, top.skip_value = key, False
        self._record(child, pos, True)

    def _attach(self, value: Any, path: Path_, pos: tuple[int, int]) -> None:
        """Put a finished value into its parent (or make it the document)."""
        if not self.stack:
            if value is not _SKIP:
                self.located.data = value
                self._record((), pos, False)
            return
        top = self.stack[-1]
        if top.value is _SKIP:
            return
        if isinstance(top.value, list):
            top.value.append(value)
            self._record(path, pos, False)
            return
        keep = not top.skip_value and value is not _SKIP
        top.key, top.key_given, top.skip_value = None, False, False
        if keep:
            top.value[path[-1]] = value
            self._record(path, pos, False)

    def _record(self, path: Path_, pos: tuple[int, int], is_key: bool) -> None:
        (self.located.keys if is_key else self.located.values)[path] = pos
        self.entries.append((path, pos, is_key))


def _copy(value: Any) -> Any:
    """A copy of the containers an alias stands for (leaves are immutable and shared);
    recursion is bounded by the depth limit."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _key_text(key: Any) -> str:
    """Keys are text: a ``1:`` or ``true:`` key is the text YAML read, not a number."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _short_tag(tag: str | None) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag and tag.startswith("tag:yaml.org,2002:") else str(tag)
