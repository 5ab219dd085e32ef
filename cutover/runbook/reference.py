"""The runbook reference (docs/runbook-reference.md), generated from the models so it
cannot drift from what the loader accepts."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cutover.runbook import model, names

REFERENCE_PATH = "docs/runbook-reference.md"

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("Runbook (top level)", model.Runbook),
    ("window", model.Window),
    ("defaults", model.Defaults),
    ("defaults.concurrency", model.Concurrency),
    ("sites.NAME", model.Site),
    ("sites.NAME.postgres", model.PostgresSite),
    ("sites.NAME.ssh", model.SshSite),
    ("sites.NAME.http", model.HttpSite),
    ("dns", model.Dns),
    ("applications[]", model.Application),
    ("applications[].databases[]", model.DatabaseMove),
    ("applications[].databases[].roles.NAME", model.RolePassword),
    ("applications[].files[]", model.FileMove),
    ("applications[].dns[]", model.DnsRecord),
    ("action (freeze, unfreeze, start, stop, smoke, finalize)", model.Action),
    ("action http", model.HttpStep),
    ("action sql", model.SqlStep),
    ("action ssh", model.SshStep),
    ("gates[]", model.Gate),
    ("placement", model.Placement),
]

INTRO = """\
# Runbook reference

Generated from the models in `cutover/runbook/model.py` by `cutover schema --format markdown`;
do not edit by hand. Editors can validate against `runbooks/runbook.schema.json`.

Conventions:

- Unknown keys are errors (with a did-you-mean hint); every error names `FILE:LINE:COL`.
- **secret** fields take a reference, never a value: `env:NAME` (environment variable) or
  `secret:NAME` (Prefect Secret block). An inline value is rejected.
- Any plain value may use `${NAME}` or `${NAME:-default}` to read the environment at load
  time (quote it inside `{...}` flow mappings); `$$` is a literal `$`.
- **name** (the cutover, applications, sites, files): lowercase `a-z0-9_-`, starting with a
  letter, at most 63 characters: names become step ids such as `burgerzaken/export/bzk`.
  Applications may not be called `gate`, `rollback` or `preflight`.
- **gate name**: lowercase `a-z0-9-` (no `_`: it is part of a Prefect pause key).
- **PostgreSQL name** (databases, roles): ASCII letters, digits, `_`, `-`, `.`, starting with a
  letter or `_`, at most 63 bytes; no `/`, space, quote or other separator (the name is part
  of step ids and file names); role names do not start with `pg_`. **login name**: the same
  and `@`.
- **host**: a host name or an IP address; **DNS name**: fully qualified with its trailing
  dot; **URL**: `http` or `https` with a valid host; **directory**: an absolute path without
  `..`.
- Every number has bounds, shown beside its type (`int, 1..65535`; seconds for `_s` keys:
  a step waits at most a week, a check at most an hour); `.inf` and `.nan` are refused.
- Smoke `sql` checks are one read-only query (see `docs/security.md`).
- The file is UTF-8, at most 4 MiB, nested at most 32 levels, with at most 100,000 values;
  YAML anchors and aliases may add at most 50,000 values; YAML tags other than the plain
  scalar ones and merge keys (`<<`) are refused.
"""

# Labels for the constrained string types of ``names`` and ``addresses``, by what checks them.
CHECK_LABELS = {
    "check_host": "host",
    "check_dns_name": "DNS name",
    "check_record_name": "DNS name",
    "check_url": "URL",
    "check_host_port": "host:port",
    "check_directory": "directory",
    "_not_pg_reserved": "PostgreSQL name",
    "_not_reserved": "name",
}
PATTERN_LABELS = {
    names.STEP_NAME_PATTERN: "name",
    names.GATE_NAME_PATTERN: "gate name",
    names.PG_NAME_PATTERN: "PostgreSQL name",
    names.LOGIN_NAME_PATTERN: "login name",
}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        args = typing.get_args(annotation)
        if any(getattr(m, "func", None) and "_check" in getattr(m.func, "__name__", "") for m in args[1:]):
            return "secret"
        label = _constrained_label(args)
        return label or _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is typing.Literal:
        return " \\| ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return f"map of {_type_name(typing.get_args(annotation)[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _constrained_label(args: tuple[Any, ...]) -> str | None:
    """The name of a constrained string type (host, PostgreSQL name...), or None."""
    metadata = list(args[1:])
    if typing.get_origin(args[0]) is typing.Annotated:
        metadata += list(typing.get_args(args[0])[1:])
    for item in metadata:
        for inner in [item, *getattr(item, "metadata", [])]:
            label = CHECK_LABELS.get(getattr(getattr(inner, "func", None), "__name__", ""))
            label = label or PATTERN_LABELS.get(str(getattr(inner, "pattern", "")))
            if label:
                return label
    return None


def _default(info: Any) -> str:
    if info.is_required():
        return "**required**"
    value = info.default
    if value is PydanticUndefined or value is None:
        return ""
    if isinstance(value, BaseModel):
        return "(see section)"
    if isinstance(value, (list, dict, str)) and not value:
        return "empty"
    return f"`{value}`"


def _bounds(metadata: list[Any]) -> str:
    """``1..65535``, ``>0..604800``: the range a number must lie in, from its constraints."""

    def number(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else f"{value:g}"

    low = high = ""
    for item in metadata:
        if getattr(item, "ge", None) is not None:
            low = number(item.ge)
        if getattr(item, "gt", None) is not None:
            low = ">" + number(item.gt)
        if getattr(item, "le", None) is not None:
            high = number(item.le)
        if getattr(item, "lt", None) is not None:
            high = "<" + number(item.lt)
    return f", {low}..{high}" if low or high else ""


def reference_markdown() -> str:
    out = [INTRO]
    for title, cls in SECTIONS:
        out += [f"## {title}", ""]
        doc = (cls.__doc__ or "").strip()
        if doc and not doc.startswith(("A base class", "Usage docs")):
            out += [" ".join(doc.split()), ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, info in cls.model_fields.items():
            key = info.alias or name
            kind = (
                _type_name(info.annotation)
                if not info.metadata
                else _type_name(typing.Annotated[info.annotation, *info.metadata])
            )
            out.append(f"| `{key}` | {kind}{_bounds(info.metadata)} | {_default(info)} | {info.description or ''} |")
        out.append("")
    return "\n".join(out)
