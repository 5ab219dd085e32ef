"""Load a runbook file into a ``Runbook``, or fail with every problem located.

Three passes, each adding problems to one list: YAML (syntax, limits, characters,
duplicate keys, unset ``${...}`` variables), structure (pydantic: unknown keys, types,
bounds, names, inline secrets), and meaning (``checks``: references, duplicates, cycles,
zone, window, smoke SQL). The meaning checks run even when the structure has problems, on
the parts that are well-formed (``salvage``), so one ``validate`` reports everything. A
problem reads ``FILE:LINE:COL: key.path: message (hint)``, on one line.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cutover.errors import Problem, RunbookError
from cutover.runbook import checks
from cutover.runbook.display import format_path, one_line
from cutover.runbook.model import Runbook
from cutover.runbook.names import PATTERN_MESSAGES
from cutover.runbook.salvage import salvage
from cutover.runbook.suggest import did_you_mean
from cutover.runbook.yaml_source import LIMITS, Located, Path_, UnreadableYaml
from cutover.runbook.yaml_source import load as load_yaml

__all__ = ["format_path", "load_runbook", "parse_runbook"]

OTHER_ENCODINGS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def load_runbook(path: str | Path, environ: Mapping[str, str] | None = None) -> Runbook:
    """Parse and check a runbook file. Raises RunbookError listing every problem found."""
    path = Path(path)
    name = str(path)
    try:
        with path.open("rb") as file:
            data = file.read(LIMITS.max_bytes + 1)  # never more: the path may be a device or a pipe
    except FileNotFoundError:
        raise RunbookError([Problem(one_line(name), 1, 1, "", "file not found")]) from None
    except OSError as exc:
        raise RunbookError([Problem(one_line(name), 1, 1, "", f"cannot read the file: {exc.strerror or exc}")]) from None
    return parse_runbook(decode(data, name), name, environ)


def decode(data: bytes, filename: str) -> str:
    """The file's text: UTF-8, with or without a byte order mark. Anything else is a
    located problem (the first byte that is not UTF-8)."""
    if len(data) > LIMITS.max_bytes:
        raise RunbookError([Problem(one_line(filename), 1, 1, "", f"the runbook is larger than {LIMITS.max_bytes >> 20} MiB")])
    for bom, encoding in OTHER_ENCODINGS.items():
        if data.startswith(bom):
            raise RunbookError([Problem(one_line(filename), 1, 1, "", f"the file is {encoding} text; save the runbook as UTF-8")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode("utf-8", "replace")) + 1
        message = f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the runbook as UTF-8"
        raise RunbookError([Problem(one_line(filename), line, column, "", message)]) from None


def parse_runbook(text: str, filename: str = "<runbook>", environ: Mapping[str, str] | None = None) -> Runbook:
    """Like ``load_runbook`` for text already in memory; ``filename`` appears in problems."""
    filename = one_line(filename)
    text = text.removeprefix("\ufeff")
    try:
        located, yaml_problems = load_yaml(text, environ)
    except UnreadableYaml as exc:
        raise RunbookError([_problem(filename, p.line, p.column, p.path, p.message) for p in exc.problems]) from None
    problems = [_problem(filename, p.line, p.column, p.path, p.message) for p in yaml_problems]
    if not isinstance(located.data, dict):
        problems.append(Problem(filename, 1, 1, "", "a runbook is a mapping of keys such as cutover, sites, applications"))
        raise RunbookError(problems)
    try:
        runbook = Runbook.model_validate(located.data)
        broken: frozenset[Path_] = frozenset()
    except ValidationError as exc:
        # a value left unread by a YAML problem would only be reported again as a type error
        unread = {p.path for p in yaml_problems}
        problems += _structure_problems(exc, located, filename, unread)
        runbook, broken = salvage(located.data)
    for found in checks.check(runbook, broken):
        line, column = located.position(found.path, key=found.at_key)
        problems.append(_problem(filename, line, column, found.path, found.message))
    if problems:
        raise RunbookError(problems)
    return runbook


def _problem(filename: str, line: int, column: int, path: Path_, message: str) -> Problem:
    return Problem(filename, line, column, format_path(path), one_line(message))


def _structure_problems(exc: ValidationError, located: Located, filename: str, unread: set[Path_]) -> list[Problem]:
    problems = []
    seen: set[tuple[Path_, str]] = set()
    errors = [(error, _data_path(located.data, error["loc"])) for error in exc.errors(include_url=False)]
    # a value that fails every member of a union (``int | list[int]``) gets one error per
    # member; "should be a valid list" says nothing when the number is out of bounds
    specific = {path for error, path in errors if not error["type"].endswith("_type")}
    for error, path in errors:
        loc = error["loc"]
        if path in unread or (path in specific and error["type"].endswith("_type")):
            continue
        kind = error["type"]
        ctx = error.get("ctx") or {}
        message = error["msg"].removeprefix("Value error, ").replace("Input should be", "should be", 1)
        at_key = bool(loc) and loc[-1] == "[key]"
        if kind == "extra_forbidden":
            parent = _model_at(Runbook, path[:-1])
            allowed = sorted(_keys_of(parent)) if parent else []
            message = f"unknown key '{path[-1]}'" + did_you_mean(str(path[-1]), allowed)
            at_key = True
        elif kind == "missing":
            message = f"missing required key '{loc[-1]}'"
            path = path[:-1] if path and path[-1] == loc[-1] else path
        elif kind == "literal_error":
            expected = _literal_values(ctx.get("expected", ""))
            given = error.get("input")
            if isinstance(given, str) and len(given) <= 100:
                message += did_you_mean(given, expected)
        elif kind == "string_pattern_mismatch":
            message = PATTERN_MESSAGES.get(str(ctx.get("pattern")), "does not have the form this key needs")
        elif kind == "string_too_long":
            message = f"at most {ctx.get('max_length')} characters"
        elif kind in ("less_than_equal", "greater_than_equal", "greater_than", "less_than"):
            message = _bound_message(kind, ctx, path)
        elif kind == "int_parsing_size":
            message = "the number is far too large"
        if (path, message) in seen:
            continue
        seen.add((path, message))
        line, column = located.position(path, key=at_key)
        problems.append(_problem(filename, line, column, path, message))
    return problems


UNITS = (("_s", "seconds"), ("_ms", "milliseconds"), ("_bytes", "bytes"))


def _bound_message(kind: str, ctx: dict[str, Any], path: Path_) -> str:
    words = {
        "less_than_equal": "at most",
        "greater_than_equal": "at least",
        "greater_than": "more than",
        "less_than": "less than",
    }[kind]
    bound = next(iter(ctx.values()), None)
    if isinstance(bound, float) and bound.is_integer():
        bound = int(bound)
    key = str(path[-1]) if path and isinstance(path[-1], str) else ""
    unit = next((name for suffix, name in UNITS if key.endswith(suffix)), "")
    readable = _readable(bound, unit)
    return f"must be {words} {bound}{' ' + unit if unit else ''}{f' ({readable})' if readable else ''}"


def _readable(bound: Any, unit: str) -> str:
    if not isinstance(bound, (int, float)) or bound <= 0:
        return ""
    if unit == "seconds" and bound >= 3600:
        hours = bound / 3600
        return f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} hours"
    if unit == "bytes" and bound >= 1 << 30:
        for size, name in ((1 << 50, "PiB"), (1 << 40, "TiB"), (1 << 30, "GiB")):
            if bound >= size:
                return f"{bound / size:g} {name}"
    return ""


def _data_path(data: Any, loc: tuple[Any, ...]) -> Path_:
    """Keep the parts of a pydantic error location that exist in the data: pydantic adds
    union member names ('int', 'list[int]', 'function-after[...]') that the user never wrote."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not _is_union_tag(part):
            path.append(part)  # a missing or unknown key: the path ends here
            node = None
    return tuple(path)


def _is_union_tag(part: str) -> bool:
    return "[" in part or part in {"int", "str", "float", "bool", "list", "dict"} or part.startswith(("function-", "literal"))


def _literal_values(expected: str) -> list[str]:
    return [v.strip(" '") for v in expected.replace(" or ", ",").split(",") if v.strip(" '")]


def _keys_of(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def _model_at(model: type[BaseModel], path: Path_) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (for did-you-mean on keys)."""
    current: Any = model
    for part in path:
        current = _unwrap(current, part)
        if current is None:
            return None
    found = _first_model(current)
    return found


def _unwrap(annotation: Any, part: str | int) -> Any:
    model = _first_model(annotation)
    if isinstance(part, str) and model is not None:
        for name, info in model.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        if not _is_mapping(annotation):
            return None
    for arg in _members(annotation):
        origin = typing.get_origin(arg)
        if origin is list and isinstance(part, int):
            return typing.get_args(arg)[0]
        if origin is dict and isinstance(part, str):
            return typing.get_args(arg)[1]
    return None


def _members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _first_model(annotation: Any) -> type[BaseModel] | None:
    for arg in _members(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _is_mapping(annotation: Any) -> bool:
    return any(typing.get_origin(a) is dict for a in _members(annotation))
