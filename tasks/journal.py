"""The journal's store (see cutover.journal): Prefect variables, readable from any
machine that reaches the Prefect API, and surviving a crash of the flow process.

A Prefect variable holds at most 5000 characters; a bigger entry (the plan of an estate)
is written to Prefect's result storage, where the steps' results live too, and its
variable holds where (``{"stored": <path>}``)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from prefect.results import get_default_result_storage
from prefect.variables import Variable

_ALLOWED = re.compile(r"[^a-z0-9_-]")
_MAX = 255
_VARIABLE_VALUE_MAX = 4000  # Prefect refuses values of 5000 characters and more (as JSON)


def variable_name(scope: str, key: str) -> str:
    """``cutover-<scope>-<key>`` in the characters Prefect allows (lowercase letters,
    digits, ``-``, ``_``); a hash keeps two names that clean up alike apart."""
    raw = f"cutover-{scope}-{key}"
    name = _ALLOWED.sub("-", raw.lower())
    if name != raw or len(name) > _MAX:
        name = name[: _MAX - 9] + "-" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    return name


def _storage() -> Any:
    """Prefect's result storage (a file system block); called outside an event loop."""
    return get_default_result_storage()


class VariablesJournal:
    """A :class:`cutover.journal.Journal` of Prefect variables named ``cutover-<scope>-<key>``."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    def read(self, key: str, default: Any = None) -> Any:
        value = Variable.get(variable_name(self.scope, key), default=default)
        if isinstance(value, dict) and set(value) == {"stored"}:
            return json.loads(_storage().read_path(value["stored"]))
        return value

    def write(self, key: str, value: Any) -> None:
        name = variable_name(self.scope, key)
        text = json.dumps(value)
        if len(text) > _VARIABLE_VALUE_MAX:
            path = f"cutover-journal/{name}.json"
            _storage().write_path(path, text.encode())
            value = {"stored": path}
        Variable.set(name, value, tags=["cutover"], overwrite=True)


def run_journal(flow_run_id: str) -> VariablesJournal:
    """The journal of one cutover run (a retry keeps its flow run id, and so its journal)."""
    return VariablesJournal(flow_run_id)


def estate_journal(cutover: str) -> VariablesJournal:
    """The journal of an estate, across its runs (the TTL lowerings of the preflight)."""
    return VariablesJournal(f"estate-{cutover}")
