"""The decision forms an operator fills in the Prefect UI when a run pauses."""

from __future__ import annotations

from prefect.input import RunInput


class GateDecision(RunInput):
    """Shown in the Prefect UI when a gate pauses the run; the answer is recorded in the
    run's results (a retried run does not ask again) and in the audit log."""

    approve: bool
    decided_by: str
    reason: str = ""


class PointOfNoReturnDecision(RunInput):
    """Asked when a step fails after the point of no return. Leave ``roll_back`` off to
    roll forward (the run ends Failed; fix the cause and retry the run). Rolling back also
    needs ``acknowledge_writes_lost``: the writes the new site took since the switch will
    not be on the source."""

    roll_back: bool = False
    acknowledge_writes_lost: bool = False
    decided_by: str
    reason: str = ""
