"""The journal: what a cutover run must remember outside any one step's result, so that it
survives a crash of the flow process and can be read by another process (the rollback
flow, a worker on another machine). A port: :class:`Journal` is the interface the library
uses; the Prefect Variables store that implements it lives in ``tasks/journal.py``, and
:class:`MemoryJournal` serves tests.

A run's journal is scoped by its **flow run id** (which a retry keeps); what belongs to one
attempt of it carries the **attempt key** (``<flow run id>`` or ``<flow run id>.g<N>`` after N
rollbacks) in the entry's name. The estate's journal (scoped by the cutover's name) holds
what outlives runs: the TTL lowerings. Entries:

* ``generations``: per application, how many rollbacks it went through (see
  :class:`Attempts`), and how many rollbacks the run went through. Part of every step's
  cache key, dump directory and target marker (through the attempt key), so retrying a
  rolled-back application starts over (freezes again) instead of skipping undone steps.
* ``rollback``: the last rollback: which applications' attempts it undoes and whether it
  finished. An unfinished one must be finished (``cutover rollback RUN``) before the run
  may be retried.
* ``plan-<attempt>``: the plan the attempt ran, written before its first step; the rollback
  and the summary read it instead of planning again.
* ``dns-<attempt>-<application>``: written *before* a DNS switch changes anything (old
  values, the target databases' write counters), then after every record it changed.
* ``freeze-<application>``: the databases the application's freeze found read-only before
  this run froze anything (written once, by the first attempt that looked).
* (estate) ``ttl-lowered``: per record, when its TTL was lowered and from what.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class Journal(Protocol):
    """A small key-value store of JSON values, scoped to one run (or one estate)."""

    def read(self, key: str, default: Any = None) -> Any: ...

    def write(self, key: str, value: Any) -> None: ...


class MemoryJournal:
    """A journal in a dict, for tests and for runs without a Prefect server."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}

    def read(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(self.entries.get(key, default))

    def write(self, key: str, value: Any) -> None:
        self.entries[key] = copy.deepcopy(value)


# --- generations and rollbacks --------------------------------------------------------


@dataclass(frozen=True)
class Attempts:
    """The keys the steps of a run work under, now. Each application has a generation: how
    many rollbacks it went through in this run. A step of an application works under
    ``<flow run id>`` (generation 0) or ``<flow run id>.g<N>``: that key is in its cache
    key, dump directory, target marker and DNS journal, so after a rollback its steps run
    again while the steps of applications that were not rolled back stay done. A gate
    works under the generations of the applications it holds. The run itself (its plan,
    audit log, measured sizes) works under the number of rollbacks it went through."""

    flow_run_id: str
    generations: dict[str, int] = field(default_factory=dict)
    rollbacks: int = 0

    def _key(self, generation: int) -> str:
        return self.flow_run_id if generation == 0 else f"{self.flow_run_id}.g{generation}"

    def of(self, application: str) -> str:
        return self._key(self.generations.get(application, 0))

    def of_gate(self, applications: Iterable[str]) -> str:
        gens = [self.generations.get(name, 0) for name in applications]
        if len(set(gens)) <= 1:
            return self._key(gens[0] if gens else 0)
        return f"{self.flow_run_id}.g" + "-".join(str(g) for g in gens)

    @property
    def run(self) -> str:
        return self._key(self.rollbacks)


def attempts(flow_run_id: str, journal: Journal) -> Attempts:
    entry = journal.read("generations") or {}
    return Attempts(flow_run_id, dict(entry.get("applications", {})), int(entry.get("rollbacks", 0)))


def attempt_key(flow_run_id: str, journal: Journal, generation_: int | None = None) -> str:
    """The key of the run as a whole (its plan, audit log): ``<id>`` or ``<id>.g<rollbacks>``."""
    return Attempts(flow_run_id, rollbacks=attempts(flow_run_id, journal).rollbacks if generation_ is None else generation_).run


def begin_rollback(journal: Journal, flow_run_id: str, undoing: Mapping[str, str], run_key: str) -> None:
    """A rollback begins of each application's attempt in ``undoing`` (application -> the
    key it worked under): their generations, and the run's count of rollbacks, go up (once:
    finishing an unfinished rollback again changes nothing), so a retry moves them again
    from the freeze; and it is recorded as unfinished until :func:`end_rollback`."""
    journal.write("rollback", {"of": dict(undoing), "run": run_key, "finished": False})
    current = attempts(flow_run_id, journal)
    generations = {**current.generations}
    moved = False
    for name, key in undoing.items():
        if current.of(name) == key:
            generations[name] = generations.get(name, 0) + 1
            moved = True
    if moved:
        journal.write("generations", {"applications": generations, "rollbacks": current.rollbacks + 1})


def end_rollback(journal: Journal, finished: bool) -> None:
    entry = dict(journal.read("rollback") or {})
    entry["finished"] = finished
    journal.write("rollback", entry)


def unfinished_rollback(journal: Journal) -> dict[str, Any] | None:
    """The unfinished rollback of this run (``of``: application -> the key it was undoing;
    ``run``: the run's key then), if there is one."""
    entry = journal.read("rollback")
    return dict(entry) if entry and not entry.get("finished") else None


# --- what single steps keep -------------------------------------------------------------


class DnsSwitchRecord:
    """The DNS switch's write-ahead record of one application, in one attempt."""

    def __init__(self, journal: Journal, attempt: str, application: str) -> None:
        self.journal, self.key = journal, f"dns-{attempt}-{application}"

    def get(self) -> dict[str, Any] | None:
        value = self.journal.read(self.key)
        return dict(value) if value else None

    def put(self, entry: dict[str, Any]) -> None:
        self.journal.write(self.key, entry)


class FreezeRecord:
    """What one application's freeze found; written once per run (see the module docstring)."""

    def __init__(self, journal: Journal, application: str) -> None:
        self.journal, self.key = journal, f"freeze-{application}"

    def found_frozen(self) -> list[str] | None:
        entry = self.journal.read(self.key)
        return None if entry is None else list(entry.get("found_frozen", []))

    def record(self, found_frozen: list[str]) -> None:
        self.journal.write(self.key, {"found_frozen": found_frozen})


class TtlRecord:
    """The estate's TTL lowerings, by ``"<name> <type>"``: ``{"old_ttl", "lowered_to", "at"}``."""

    KEY = "ttl-lowered"

    def __init__(self, estate_journal: Journal) -> None:
        self.journal = estate_journal

    def get(self) -> dict[str, dict[str, Any]]:
        return dict(self.journal.read(self.KEY) or {})

    def put(self, entries: dict[str, dict[str, Any]]) -> None:
        self.journal.write(self.KEY, entries)
