"""The well-formed parts of a runbook that did not validate, so that the checks of meaning
can run on them and every problem is reported in one pass.

A runbook with a misspelled key in one application still has a window, sites and gates
worth checking. ``salvage`` validates the document part by part, with the real models, and
builds a ``Runbook`` (with ``model_construct``, so without validating it again) in which a
part that did not validate is ``None``: a top-level section, a site, one item of a list, or
one field of an application, database or gate. The checks skip what is ``None``, and
``broken`` lists the key paths that were given but did not validate, so a check can tell
"not given" from "given but wrong" (a ``dns`` section that is wrong is not a missing one).

A salvaged runbook is only ever read by ``checks``; it is never returned to a caller.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from cutover.runbook import model
from cutover.runbook.yaml_source import Path_

# Models whose fields are salvaged one by one when the whole does not validate: those a
# check reads piece by piece. Others (a site, an action, a DNS record) are kept or not.
PIECEWISE: frozenset[type[BaseModel]] = frozenset({model.Runbook, model.Application, model.DatabaseMove, model.Gate})


def salvage(data: dict[str, Any]) -> tuple[model.Runbook, frozenset[Path_]]:
    broken: set[Path_] = set()
    runbook = _model(model.Runbook, data, (), broken)
    assert isinstance(runbook, model.Runbook)  # data is a mapping: the top level is always built
    return runbook, frozenset(broken)


def _model(cls: type[BaseModel], raw: Any, path: Path_, broken: set[Path_]) -> BaseModel | None:
    try:
        return cls.model_validate(raw)
    except ValidationError:
        pass
    if cls not in PIECEWISE or not isinstance(raw, dict):
        broken.add(path)
        return None
    instance = cls.model_construct()
    values: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        key = info.alias or name
        if key not in raw:
            values[name] = None if info.is_required() else getattr(instance, name)
            continue
        values[name] = _field(cls, name, info.annotation, raw[key], (*path, key), broken)
    return cls.model_construct(**values)


def _field(cls: type[BaseModel], name: str, annotation: Any, raw: Any, path: Path_, broken: set[Path_]) -> Any:
    """One field's value: item by item for lists and maps of models, else validated alone
    (with the field's own validators) or None."""
    item_model = _container_of_model(annotation)
    if item_model is not None:
        kind, inner = item_model
        if kind is list and isinstance(raw, list):
            return [_model(inner, item, (*path, i), broken) for i, item in enumerate(raw)]
        if kind is dict and isinstance(raw, dict):
            # keys are names: a key that is not a valid one is left out (and reported already)
            return {k: _model(inner, v, (*path, k), broken) for k, v in raw.items() if _valid_key(cls, name, k)}
        broken.add(path)
        return None
    try:
        probe = cls.model_construct()
        cls.__pydantic_validator__.validate_assignment(probe, name, raw)
        return getattr(probe, name)
    except Exception:
        broken.add(path)
        return None


def _container_of_model(annotation: Any) -> tuple[type, type[BaseModel]] | None:
    """(list, M) for ``list[M]`` and (dict, M) for ``dict[K, M]``, M a model; else None."""
    for member in _members(annotation):
        origin = typing.get_origin(member)
        args = typing.get_args(member)
        if origin is list and args and _is_model(args[0]):
            return list, args[0]
        if origin is dict and len(args) == 2 and _is_model(args[1]):
            return dict, args[1]
    return None


def _valid_key(cls: type[BaseModel], name: str, key: Any) -> bool:
    probe = cls.model_construct()
    try:
        cls.__pydantic_validator__.validate_assignment(probe, name, {key: None})
    except ValidationError as exc:
        return not any(e["loc"][-1] == "[key]" for e in exc.errors())
    except Exception:
        return False
    return True


def _members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
