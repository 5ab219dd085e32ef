"""What a phase is given to run one step: the runbook and the step, the run's keys, the
journal, the results of the steps it reads, and the ports to the world outside the
library (progress, events, a question to a person). The tasks build it with Prefect
behind the ports; tests build it with small fakes of our own."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cutover.journal import Journal
from cutover.plan.build import Plan, Step
from cutover.runbook.model import Application, Runbook


class Progress(Protocol):
    """Bytes on the way: ``progress(done, total)`` for an upload, ``progress(done)`` for a
    stream (its total is known only at its end, when ``finish()`` is called)."""

    def __call__(self, done: int, total: int | None = None) -> None: ...

    def finish(self) -> None: ...


Emit = Callable[[str, str, dict[str, Any]], None]
"""``emit(event, resource_name, payload)``: an event about the cutover (``cutover.gate.waiting``)."""


@dataclass(frozen=True)
class Answer:
    """A person's answer to a question a run paused for (the words are cutover.decisions')."""

    decision: str
    decided_by: str
    reason: str = ""
    acknowledge_writes_lost: bool = False


class Ask(Protocol):
    """Pause for a person's answer (``kind``: ``gate`` or ``point-of-no-return``; for a gate,
    only ``approvers`` may answer, when there are any). None when nobody answered and
    ``when_overdue(n)`` (called each time ``patience_s`` passes) said to stop waiting."""

    def __call__(
        self,
        kind: str,
        *,
        key: str,
        description: str,
        question: dict[str, Any],
        patience_s: float,
        when_overdue: Callable[[int], bool],
        approvers: list[str] | None = None,
    ) -> Answer | None: ...


def _no_events(event: str, resource: str, payload: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class StepContext:
    runbook: Runbook
    plan: Plan  # the plan the run's attempt runs (the journal's plan-<attempt>)
    step: Step
    attempt_key: str  # <flow run id>[.g<N>]: the generation of the run this step belongs to
    flow_run_id: str
    journal: Journal  # the run's
    estate_journal: Journal  # the estate's, across runs
    upstream: Mapping[str, Any] = field(default_factory=dict)  # results of step.reads, by step id
    progress: Progress | None = None
    emit: Emit = _no_events
    ask: Ask | None = None
    rolled_back: Mapping[str, str] = field(default_factory=dict)  # applications sent back in this attempt, and why

    @property
    def app(self) -> Application:
        return self.runbook.application(self.step.application or "")

    def read(self, step_id: str) -> Any:
        """The result of step ``step_id``, which this step reads (``Step.reads``)."""
        if step_id not in self.upstream:
            raise KeyError(f"{self.step.id} was not given the result of {step_id}")
        return self.upstream[step_id]
