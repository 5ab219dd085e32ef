"""The runbook reference (docs/runbook-reference.md), generated from the models so it
cannot drift from what the loader accepts."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cutover.runbook import model

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
- Names of applications, sites, gates are lowercase (`a-z0-9_-`): they become step ids
  such as `burgerzaken/export/bzk`.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        args = typing.get_args(annotation)
        if any(getattr(m, "func", None) and "_check" in getattr(m.func, "__name__", "") for m in args[1:]):
            return "secret"
        return _type_name(args[0])
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
            out.append(f"| `{key}` | {_type_name(info.annotation) if not info.metadata else _type_name(typing.Annotated[info.annotation, *info.metadata])} | {_default(info)} | {info.description or ''} |")
        out.append("")
    return "\n".join(out)
