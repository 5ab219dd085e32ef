"""What a cutover run must remember outside any one task's result, kept as Prefect
variables so that it survives a crash of the flow process and is readable by another
process (the rollback flow, a worker on another machine).

* ``dns-<application>``: written *before* a DNS switch changes anything (the old values,
  and the target databases' write counters at that moment), then updated after every
  record it changed. A revert needs the old values even when the switch crashed before
  returning them; the point of no return needs to know whether anything was switched.
* ``rollback``: the last rollback of the run: which generation it undoes and whether it
  finished. An unfinished one (a compensation failed, or the process died) must be
  finished, by ``cutover rollback RUN``, before the run may be retried.
* ``freeze-<application>``: what the application's freeze found: the databases that were
  already read-only before this run froze anything (somebody else froze them: an earlier
  run that cut the estate over, an administrator). A rollback leaves those, and the
  application's maintenance mode, as it found them.
* ``generation``: how many rollbacks this run has been through. It is part of every
  step's cache key, dump directory and target marker, so retrying a rolled-back run
  starts over (freezes again) instead of skipping steps whose effects were undone.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from prefect.variables import Variable

_ALLOWED = re.compile(r"[^a-z0-9_-]")
_MAX = 255


def variable_name(run_key: str, key: str) -> str:
    """``cutover-<run key>-<key>`` in the characters Prefect allows (lowercase letters,
    digits, ``-``, ``_``); a hash keeps two names that clean up alike apart."""
    raw = f"cutover-{run_key}-{key}"
    name = _ALLOWED.sub("-", raw.lower())
    if name != raw or len(name) > _MAX:
        name = name[: _MAX - 9] + "-" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    return name


def write(run_key: str, key: str, value: dict[str, Any] | int) -> None:
    Variable.set(variable_name(run_key, key), value, tags=["cutover"], overwrite=True)


def read(run_key: str, key: str, default: Any = None) -> Any:
    return Variable.get(variable_name(run_key, key), default=default)


def generation(run_key: str) -> int:
    return int(read(run_key, "generation", 0) or 0)


def attempt_key(run_key: str, generation_: int | None = None) -> str:
    """The key the steps of this run's current generation work under."""
    gen = generation(run_key) if generation_ is None else generation_
    return run_key if gen == 0 else f"{run_key}.g{gen}"


def start_new_generation(run_key: str) -> int:
    """Called when a rollback begins: a later retry of the run starts from the freeze."""
    gen = generation(run_key) + 1
    write(run_key, "generation", gen)
    return gen


def begin_rollback(run_key: str, attempt: str) -> None:
    write(run_key, "rollback", {"of": attempt, "finished": False})
    start_new_generation(run_key)


def end_rollback(run_key: str, attempt: str, finished: bool) -> None:
    write(run_key, "rollback", {"of": attempt, "finished": finished})


def unfinished_rollback(run_key: str) -> str | None:
    """The attempt key an unfinished rollback of this run was undoing, if there is one."""
    entry = read(run_key, "rollback")
    return entry["of"] if entry and not entry.get("finished") else None


class FreezeRecord:
    """What one application's freeze found, as a Prefect variable of the run: written once,
    by the first attempt that looked, so a retry (which finds the databases it froze
    itself read-only) does not take them for frozen by somebody else."""

    def __init__(self, flow_run_id: str, application: str) -> None:
        self.flow_run_id, self.key = flow_run_id, f"freeze-{application}"

    def found_frozen(self) -> list[str] | None:
        entry = read(self.flow_run_id, self.key)
        return None if entry is None else list(entry.get("found_frozen", []))

    def record(self, found_frozen: list[str]) -> None:
        write(self.flow_run_id, self.key, {"found_frozen": found_frozen})


class TtlJournal:
    """The estate's TTL lowerings (``cutover preflight --lower-ttl``), as one Prefect
    variable per cutover: they are made days before the run that needs them."""

    def __init__(self, cutover: str) -> None:
        self.scope, self.key = f"estate-{cutover}", "ttl-lowered"

    def get(self) -> dict[str, dict[str, Any]]:
        return dict(read(self.scope, self.key) or {})

    def put(self, entries: dict[str, dict[str, Any]]) -> None:
        write(self.scope, self.key, entries)
