"""The words of a decision, shared by the forms a paused run shows, the CLI that answers
them and the follower that prints them: the answers, the pause keys' prefixes, and the
command that answers each question from a terminal."""

from __future__ import annotations

import hashlib
import re

from cutover import event_names

_NOT_IN_PAUSE_KEY = re.compile(r"[^a-z0-9-]+")

GO = "go"
NO_GO = "no-go: roll back"
ROLL_FORWARD = "roll forward"
ROLL_BACK = "roll back"

GATE_PAUSE = "gate"  # pause keys: gate-<gate>-<attempt>
DECISION_PAUSE = "ponr"  # pause keys: ponr-<attempt>-<run count>
QUESTION_SUFFIX = "-question"  # the flow run input beside a pause's form: what is asked

GATE_EVENTS = (event_names.GATE_WAITING, event_names.GATE_OVERDUE, event_names.GATE_DECIDED)
DECISION_EVENTS = (event_names.DECISION_WAITING, event_names.DECISION_OVERDUE, event_names.DECISION_DECIDED)


def gate_command(flow_run_id: str, gate: str) -> str:
    """How to answer gate ``gate`` of a paused run from a terminal."""
    return f"cutover decide {flow_run_id} --gate {gate} --go|--no-go --by NAME --reason TEXT"


def point_of_no_return_command(flow_run_id: str) -> str:
    """How to answer the point-of-no-return question of a paused run from a terminal."""
    return f"cutover decide {flow_run_id} --by NAME --roll-forward | --roll-back --acknowledge-writes-lost"


def is_gate_pause(key: str) -> bool:
    return key.startswith(GATE_PAUSE + "-")


def is_decision_pause(key: str) -> bool:
    return key.startswith(DECISION_PAUSE + "-")


def pause_key(*parts: str) -> str:
    """A pause key made of ``parts``, in the only characters Prefect accepts there
    (lowercase letters, digits, dashes): ``gate-go-no-go-<run id>-g1``. A short hash of
    the parts keeps two keys that clean up alike (``a_b`` and ``a.b``) apart."""
    raw = "-".join(parts)
    clean = _NOT_IN_PAUSE_KEY.sub("-", raw.lower()).strip("-")
    if clean != raw:
        clean = f"{clean[:200]}-{hashlib.sha256(raw.encode()).hexdigest()[:6]}"
    return clean
