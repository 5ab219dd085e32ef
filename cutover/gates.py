"""Go/no-go gates: the decision form an operator fills in the Prefect UI."""

from __future__ import annotations

from prefect.input import RunInput


class GateDecision(RunInput):
    """Shown in the Prefect UI when a gate pauses the run; the answer is recorded in the
    run's results (a retried run does not ask again) and in the audit log."""

    approve: bool
    decided_by: str
    reason: str = ""
