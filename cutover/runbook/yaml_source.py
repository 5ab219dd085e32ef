"""YAML with positions: every value and every key remembers where it was written.

PyYAML's composer gives nodes with marks; we build plain Python values from them and keep
a side table from key paths (``("applications", 2, "depends_on")``) to (line, column),
so any later error, structural or semantic, can point at the exact spot in the file.
Environment interpolation (``${NAME}`` / ``${NAME:-default}``) happens here too, on
scalar strings, so errors in interpolated values still point at the right place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

# libyaml when present: ten times faster on a large estate, same nodes and marks
COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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


def _pos(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def load(text: str, environ: Mapping[str, str] | None = None) -> tuple[Located, list[YamlProblem]]:
    """Parse YAML text. Syntax errors raise YamlProblem; duplicate keys and unresolvable
    ``${...}`` references are returned as problems next to the (best-effort) document."""
    env = os.environ if environ is None else environ
    try:
        root = yaml.compose(text, Loader=COMPOSER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context == "while scanning a simple key" and exc.context_mark:
            mark = exc.context_mark  # the key missing its ':' is where the user must look
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            reason = f"{exc.problem} ({exc.context})"
        raise YamlProblem(line, column, (), f"YAML syntax error: {reason}") from None
    located = Located(data=None)
    problems: list[YamlProblem] = []
    if root is None:
        return located, problems
    constructor = yaml.SafeLoader("")
    located.data = _build(root, (), located, problems, constructor, env)
    return located, problems


def _build(
    node: yaml.Node,
    path: Path_,
    located: Located,
    problems: list[YamlProblem],
    constructor: yaml.SafeLoader,
    env: Mapping[str, str],
) -> Any:
    located.values[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(YamlProblem(*_pos(key_node), path, "a key must be a plain value"))
                continue
            key = constructor.construct_object(key_node)
            if key == "<<":
                problems.append(YamlProblem(*_pos(key_node), path, "YAML merge keys (<<) are not supported"))
                continue
            if not isinstance(key, (str, int)):
                key = str(key)
            child = (*path, key)
            if key in result:
                first = located.keys[child]
                problems.append(
                    YamlProblem(*_pos(key_node), child, f"duplicate key '{key}' (first given at line {first[0]})")
                )
                continue
            located.keys[child] = _pos(key_node)
            result[key] = _build(value_node, child, located, problems, constructor, env)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, index), located, problems, constructor, env)
            for index, item in enumerate(node.value)
        ]
    value = constructor.construct_object(node)
    if isinstance(value, str) and "$" in value:
        try:
            value = interpolate(value, env)
        except KeyError as exc:
            name = exc.args[0]
            problems.append(
                YamlProblem(
                    *_pos(node),
                    path,
                    f"environment variable {name} is not set (set it, or give a default: ${{{name}:-value}})",
                )
            )
    return value


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
