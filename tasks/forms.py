"""The forms an operator fills in the Prefect UI when a run pauses for a decision.

Neither form has a default answer: the operator picks one, so submitting an untouched form
is refused by the server (the form's JSON schema is checked on resume). The person who
decides is required; where the gate names its approvers, it is one of them (a list to pick
from, and the server refuses any other name).
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from prefect.input import RunInput

from cutover.decisions import GO, NO_GO, ROLL_BACK, ROLL_FORWARD


def _one_of(*values: str) -> Any:
    """``Literal[values]``: a list to pick from in the form, and an enum in its schema."""
    return Literal[values]


def _decided_by(approvers: list[str]) -> tuple[Any, Any]:
    if approvers:
        return (
            _one_of(*approvers),
            pydantic.Field(title="Decided by", description="who takes this decision (one of the gate's approvers)"),
        )
    return (
        pydantic.constr(strip_whitespace=True, min_length=1),
        pydantic.Field(title="Decided by", description="your name: recorded in the run, the audit log and the report"),
    )


def gate_form(approvers: list[str]) -> type[RunInput]:
    """The go/no-go form; ``approvers``: who may answer (empty: anyone who gives a name)."""
    model: type[RunInput] = pydantic.create_model(
        "GateDecision",
        __base__=RunInput,
        __doc__="Go switches DNS for the applications this gate holds; no-go rolls back every application.",
        decision=(
            _one_of(GO, NO_GO),
            pydantic.Field(
                title="Decision",
                description="go: the DNS switch goes ahead. no-go: nothing is switched and every application is rolled back.",
            ),
        ),
        decided_by=_decided_by(approvers),
        reason=(str, pydantic.Field("", title="Reason", description="why (recorded with the decision)")),
    )
    return model


def point_of_no_return_form() -> type[RunInput]:
    """Asked when a step fails after the point of no return."""
    model: type[RunInput] = pydantic.create_model(
        "PointOfNoReturnDecision",
        __base__=RunInput,
        __doc__="Roll forward (the run ends Failed; fix the cause and retry it) or roll back (the writes since the switch are lost).",
        decision=(
            _one_of(ROLL_FORWARD, ROLL_BACK),
            pydantic.Field(
                title="Decision",
                description="roll forward: nothing is undone, the run ends Failed, retry it once the cause is fixed. "
                "roll back: DNS back to the old site, the sources writable again.",
            ),
        ),
        acknowledge_writes_lost=(
            bool,
            pydantic.Field(
                False,
                title="Acknowledge writes lost",
                description="needed to roll back: the rows written on the new site since the switch will not be on the old site",
            ),
        ),
        decided_by=_decided_by([]),
        reason=(str, pydantic.Field("", title="Reason", description="why (recorded with the decision)")),
    )
    return model
