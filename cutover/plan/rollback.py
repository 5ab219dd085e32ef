"""Which compensations a rollback runs, and in which order. Pure, like the plan.

Every step that *started* (finished, failed or crashed halfway) and declares a
compensation is undone; a step that never started changed nothing. The order is the
plan's, reversed: a compensation waits for the compensations of every started step that
came after its step (depended on it, directly or through steps without a compensation).
So for one application DNS is reverted first, then the target application stopped, then
the target database dealt with, and the source unfrozen last; across applications, a
dependency is unfrozen before the applications that read it (they were frozen first).
Independent branches run side by side; a compensation that fails holds back the ones
waiting for it, and those are what is left to do by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from cutover.plan.build import Plan

PREFIX = "rollback/"


@dataclass(frozen=True)
class Compensation:
    id: str  # "rollback/<step id>"
    step: str  # the step it undoes
    phase: str
    application: str | None
    database: str | None
    text: str  # what it does, from the plan
    depends_on: tuple[str, ...]  # compensation ids that must finish first


def rollback_id(step_id: str) -> str:
    return PREFIX + step_id


def plan_rollback(plan: Plan, started: Collection[str]) -> list[Compensation]:
    """The compensations for the ``started`` steps of ``plan``, dependencies first."""
    undo = {sid for sid, step in plan.steps.items() if sid in started and step.compensation}
    successors: dict[str, list[str]] = {sid: [] for sid in plan.steps}
    for step in plan.steps.values():
        for dep in step.depends_on:
            successors[dep].append(step.id)
    # nearest[s]: the steps to undo that come after s, looking through steps without one
    nearest: dict[str, frozenset[str]] = {}
    for sid in reversed(plan.order()):
        found: set[str] = set()
        for after in successors[sid]:
            found |= {after} if after in undo else nearest[after]
        nearest[sid] = frozenset(found)
    result = []
    for sid in reversed(plan.order()):
        if sid not in undo:
            continue
        step = plan.steps[sid]
        result.append(
            Compensation(
                id=rollback_id(sid),
                step=sid,
                phase=step.phase,
                application=step.application,
                database=step.database,
                text=step.compensation or "",
                depends_on=tuple(sorted(rollback_id(after) for after in nearest[sid])),
            )
        )
    return result


def past_point_of_no_return(
    plan: Plan, started: Collection[str], completed: Collection[str], dns_switched: Callable[[], list[str]]
) -> bool:
    """Whether the run crossed the point of no return: a step at or after it finished; or
    ``finalize`` at the point began (its actions have no compensation); or the DNS switch
    at the point began and changed a record (``dns_switched()``: the names the switches
    journaled). A switch that failed before changing anything did not cross it."""
    at_or_after = {sid for sid, step in plan.steps.items() if step.irreversible}
    if at_or_after & set(completed):
        return True
    begun = at_or_after & set(started)
    if any(plan.steps[sid].phase == "finalize" for sid in begun):
        return True
    return any(plan.steps[sid].phase == "dns_switch" for sid in begun) and bool(dns_switched())
