"""What a phase is, in one place: one pure spec per phase of a cutover.

A spec says what the planner, the flow and the rollback need to know of a phase without
running it: the segment of its step ids (``burgerzaken/<segment>/bzk``), its default
estimate and throughput, the compensation that undoes it, whether its result may be
cached or it always looks again, whether it is retried, which per-host slots it takes,
whether it lies at or after the point of no return, and which parts of the runbook feed its
cache key. What a phase *does* is bound to it in :mod:`cutover.phases.registry`.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from cutover.runbook.model import Runbook, SitePhase

# Every phase a site's worker may run (cutover.runbook.model.SitePhase), and the gate,
# which pauses the flow run and so always runs in it.
Phase = Literal[SitePhase, "gate"]
PHASE_NAMES: tuple[str, ...] = typing.get_args(Phase)

Slot = Literal["dump", "restore"]
"""A per-host cap: dumps on a source host, restores on a target host."""


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True) if model is not None else None


# What each phase hashes for its cache key: fixing a smoke check and retrying must not
# re-export every database, so each phase reads only the runbook parts it depends on.
Inputs = Callable[[Runbook, Any], Any]


def _database_inputs(runbook: Runbook, step: Any) -> Any:
    db = runbook.application(step.application).database(step.database)
    return [step.method, _dump(db), _dump(runbook.sites.get(db.from_)), _dump(runbook.sites.get(db.to))]


def _freeze_inputs(runbook: Runbook, step: Any) -> Any:
    app = runbook.application(step.application)
    return [[_dump(a) for a in app.freeze], [_dump(d) for d in app.databases]]


def _files_inputs(runbook: Runbook, step: Any) -> Any:
    return [_dump(runbook.application(step.application).files_entry(step.item))]


def _dns_inputs(runbook: Runbook, step: Any) -> Any:
    return [[_dump(r) for r in runbook.application(step.application).dns], _dump(runbook.dns)]


def _gate_inputs(runbook: Runbook, step: Any) -> Any:
    return [_dump(runbook.gate(step.gate)), {name: runbook.teams[name] for name in sorted(runbook.teams)}]


def _actions_inputs(section: str) -> Inputs:
    def inputs(runbook: Runbook, step: Any) -> Any:
        return [_dump(a) for a in getattr(runbook.application(step.application), section)]

    return inputs


@dataclass(frozen=True)
class PhaseSpec:
    """One phase, as the planner and the flow see it (see the module docstring)."""

    name: str
    segment: str
    estimate_s: float  # seconds, before rehearsals have measured anything
    inputs: Inputs
    throughput: float | None = None  # bytes per second, when a database's size is known
    compensation: str | None = None  # what undoes it; "{on_rollback}" is the database's policy
    always_rerun: bool = False  # never cached: it looks at the world again on every attempt
    retried: bool = True
    slots: tuple[Slot, ...] = ()
    after_point: frozenset[str] = frozenset()  # the runbook's point_of_no_return values that put it after

    def compensation_text(self, on_rollback: str | None = None) -> str | None:
        if self.compensation is None:
            return None
        return self.compensation.format(on_rollback=on_rollback or "keep")


_BOTH = frozenset({"dns_switch", "finalize"})

PHASES: dict[str, PhaseSpec] = {
    spec.name: spec
    for spec in (
        PhaseSpec(
            "freeze", "freeze", 20, _freeze_inputs, compensation="unfreeze the source: databases writable, unfreeze actions"
        ),
        PhaseSpec("export", "export", 120, _database_inputs, throughput=60e6, slots=("dump",)),
        PhaseSpec("transfer", "transfer", 120, _database_inputs, throughput=40e6),
        PhaseSpec(
            "import",
            "import",
            180,
            _database_inputs,
            throughput=30e6,
            compensation="target database: {on_rollback}",
            slots=("restore",),
        ),
        PhaseSpec(
            "stream",
            "stream",
            240,
            _database_inputs,
            throughput=25e6,
            compensation="target database: {on_rollback}",
            slots=("dump", "restore"),
        ),
        PhaseSpec("verify", "verify", 60, _database_inputs, throughput=120e6),
        PhaseSpec("files", "files", 60, _files_inputs),
        PhaseSpec("start", "start", 10, _actions_inputs("start"), compensation="stop the target application: stop actions"),
        PhaseSpec("smoke", "smoke", 20, _actions_inputs("smoke"), always_rerun=True),
        PhaseSpec("gate", "gate", 900, _gate_inputs, retried=False),
        PhaseSpec("source_check", "source-check", 10, _freeze_inputs, always_rerun=True),
        PhaseSpec(
            "dns_switch",
            "dns",
            15,
            _dns_inputs,
            compensation="revert DNS records to the recorded old values",
            after_point=frozenset({"dns_switch"}),
        ),
        PhaseSpec("post_switch", "post-switch", 15, _dns_inputs, always_rerun=True, after_point=frozenset({"dns_switch"})),
        PhaseSpec("finalize", "finalize", 10, _actions_inputs("finalize"), after_point=_BOTH),
    )
}
assert set(PHASES) == set(PHASE_NAMES), "every phase has a spec"


def spec(phase: str) -> PhaseSpec:
    return PHASES[phase]
