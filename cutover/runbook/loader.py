"""Load a runbook file into a ``Runbook``, or fail with every problem located.

Three passes, each adding problems to one list: YAML (syntax, duplicate keys, unset
``${...}`` variables), structure (pydantic: unknown keys, types, inline secrets), and
meaning (``checks``: references, duplicates, cycles, zone, window). A problem reads
``FILE:LINE:COL: key.path: message (hint)``.
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
from cutover.runbook.model import Runbook
from cutover.runbook.suggest import did_you_mean
from cutover.runbook.yaml_source import Located, Path_, YamlProblem
from cutover.runbook.yaml_source import load as load_yaml


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_runbook(path: str | Path, environ: Mapping[str, str] | None = None) -> Runbook:
    """Parse and check a runbook file. Raises RunbookError listing every problem found."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunbookError([Problem(name, 1, 1, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise RunbookError([Problem(name, 1, 1, "", f"cannot read the file: {reason}")]) from None
    return parse_runbook(text, name, environ)


def parse_runbook(text: str, filename: str = "<runbook>", environ: Mapping[str, str] | None = None) -> Runbook:
    """Like ``load_runbook`` for text already in memory; ``filename`` appears in problems."""
    try:
        located, yaml_problems = load_yaml(text, environ)
    except YamlProblem as exc:
        raise RunbookError([Problem(filename, exc.line, exc.column, "", exc.message)]) from None
    problems = [Problem(filename, p.line, p.column, format_path(p.path), p.message) for p in yaml_problems]
    if not isinstance(located.data, dict):
        problems.append(Problem(filename, 1, 1, "", "a runbook is a mapping of keys such as cutover, sites, applications"))
        raise RunbookError(problems)
    try:
        runbook = Runbook.model_validate(located.data)
    except ValidationError as exc:
        # a value left unresolved by a ${...} problem would only be reported again as a type error
        unresolved = {format_path(p.path) for p in yaml_problems}
        problems += [p for p in _structure_problems(exc, located, filename) if p.path not in unresolved]
        raise RunbookError(problems) from None
    for found in checks.check(runbook):
        line, column = located.position(found.path, key=found.at_key)
        problems.append(Problem(filename, line, column, format_path(found.path), found.message))
    if problems:
        raise RunbookError(problems)
    return runbook


def _structure_problems(exc: ValidationError, located: Located, filename: str) -> list[Problem]:
    problems = []
    seen: set[tuple[Path_, str]] = set()
    for error in exc.errors(include_url=False):
        path = _data_path(located.data, error["loc"])
        kind = error["type"]
        message = error["msg"].removeprefix("Value error, ").replace("Input should be", "should be", 1)
        at_key = False
        if kind == "extra_forbidden":
            parent = _model_at(Runbook, path[:-1])
            allowed = sorted(_keys_of(parent)) if parent else []
            message = f"unknown key '{path[-1]}'" + did_you_mean(str(path[-1]), allowed)
            at_key = True
        elif kind == "missing":
            message = f"missing required key '{error['loc'][-1]}'"
            path = path[:-1] if path and path[-1] == error["loc"][-1] else path
        elif kind == "literal_error":
            expected = _literal_values(error.get("ctx", {}).get("expected", ""))
            message += did_you_mean(str(error.get("input")), expected)
        elif kind == "string_pattern_mismatch":
            message = "must be lowercase letters, digits, '-' or '_', starting with a letter"
        if (path, message) in seen:
            continue
        seen.add((path, message))
        line, column = located.position(path, key=at_key)
        problems.append(Problem(filename, line, column, format_path(path), message))
    return problems


def _data_path(data: Any, loc: tuple[Any, ...]) -> Path_:
    """Keep the parts of a pydantic error location that exist in the data: pydantic adds
    union member names ('int', 'list[int]', 'function-after[...]') that the user never wrote."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
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
