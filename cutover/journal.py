"""The journal: what a cutover run must remember outside any one step's result, so that it
survives a crash of the flow process and can be read by another process (the rollback
flow, a worker on another machine). A port: :class:`Journal` is the interface the library
uses; the Prefect Variables store that implements it lives in ``tasks/journal.py``, and
:class:`MemoryJournal` serves tests.

A run's journal is scoped by its **flow run id** (which a retry keeps); what belongs to one
attempt of it carries the **attempt key** (``<flow run id>`` or ``<flow run id>.g<N>`` after N
rollbacks) in the entry's name. The estate's journal (scoped by the cutover's name) holds
what outlives runs: the TTL lowerings. Entries:

* ``generation``: how many rollbacks the run has been through. Part of every step's cache
  key, dump directory and target marker (through the attempt key), so retrying a
  rolled-back run starts over (freezes again) instead of skipping undone steps.
* ``rollback``: the last rollback: which attempt it undoes and whether it finished. An
  unfinished one must be finished (``cutover rollback RUN``) before the run may be retried.
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


def generation(journal: Journal) -> int:
    return int(journal.read("generation", 0) or 0)


def attempt_key(flow_run_id: str, journal: Journal, generation_: int | None = None) -> str:
    """The key the steps of this run's current generation work under."""
    gen = generation(journal) if generation_ is None else generation_
    return flow_run_id if gen == 0 else f"{flow_run_id}.g{gen}"


def begin_rollback(journal: Journal, attempt: str) -> None:
    """A rollback of ``attempt`` begins: a later retry of the run starts from the freeze."""
    journal.write("rollback", {"of": attempt, "finished": False})
    journal.write("generation", generation(journal) + 1)


def end_rollback(journal: Journal, attempt: str, finished: bool) -> None:
    journal.write("rollback", {"of": attempt, "finished": finished})


def unfinished_rollback(journal: Journal) -> str | None:
    """The attempt key an unfinished rollback of this run was undoing, if there is one."""
    entry = journal.read("rollback")
    return entry["of"] if entry and not entry.get("finished") else None


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
