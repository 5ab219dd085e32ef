"""Pausing the run for a person's answer, with a deadline of our own.

Prefect's ``pause_flow_run`` has one timeout for two things: how long the flow waits, and
when the server fails the paused run. A gate needs them apart: past its ``timeout_s`` it
either keeps waiting (and says it is overdue) or decides no-go and rolls back, and neither
may find the run already failed by the server. So the pause here asks the server for a far
deadline (:data:`SERVER_DEADLINE_S`), waits on its own clock, and when it stops waiting
puts the run back to Running itself. The form is stored as Prefect's own pauses store it
(the UI shows it with its description); beside it, ``<key>-question`` tells the CLI what is
asked and how to answer it from a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.input import RunInput, keyset_from_paused_state
from prefect.input.actions import create_flow_run_input
from prefect.states import Paused, Running
from prefect.utilities.engine import propose_state_sync

from cutover.decisions import QUESTION_SUFFIX
from cutover.phases.context import Answer
from tasks.forms import gate_form, point_of_no_return_form

log = structlog.get_logger()

SERVER_DEADLINE_S = 30 * 86400  # the server fails a run paused this long; we stop long before


class PauseEnded(RuntimeError):
    """The run left its pause without an answer (cancelled, failed by somebody else)."""


def ask(
    form: type[RunInput],
    *,
    key: str,
    description: str,
    question: dict[str, Any],
    patience_s: float,
    when_overdue: Callable[[int], bool],
    poll_s: float = 2.0,
) -> dict[str, Any] | None:
    """Pause the run with ``form`` until someone answers it; return the answer (the form's fields).

    Each time ``patience_s`` passes without an answer, ``when_overdue(n)`` is called (n = 1,
    2, ...): True keeps waiting, False stops: the run goes on without an answer (None).
    ``key``: the pause key (lowercase letters, digits, dashes), unique within the run."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("only a flow run can pause for an answer")
    flow_run_id = context.flow_run.id
    proposed: State[Any] = Paused(timeout_seconds=SERVER_DEADLINE_S, reschedule=False, pause_key=key)
    keyset = keyset_from_paused_state(proposed)
    proposed.state_details.run_input_keyset = {str(k): v for k, v in keyset.items()}
    with get_client(sync_client=True) as client:
        state = propose_state_sync(client, proposed, flow_run_id=flow_run_id)
        if state.is_running():  # answered already (a pause with this key happened before)
            return _answer(form, keyset, flow_run_id)
        if not state.is_paused():
            raise PauseEnded(f"the run could not pause: it is {state.name}")
        form.with_initial_data(description=description).save(keyset, flow_run_id=flow_run_id)
        create_flow_run_input(key=key + QUESTION_SUFFIX, value=question, flow_run_id=flow_run_id)
        log.info("paused_for_answer", pause_key=key, kind=question.get("kind"))
        started = time.monotonic()
        overdue = 0
        while True:
            time.sleep(poll_s)
            current = client.read_flow_run(flow_run_id).state
            if current is not None and current.is_running():
                return _answer(form, keyset, flow_run_id)
            if current is None or not current.is_paused():
                raise PauseEnded(f"the run left its pause without an answer: it is {current.name if current else 'gone'}")
            if time.monotonic() - started >= patience_s * (overdue + 1):
                overdue += 1
                if not when_overdue(overdue):
                    client.set_flow_run_state(flow_run_id, Running(message=f"no answer to {key}"), force=True)
                    return None


def prefect_ask(
    kind: str,
    *,
    key: str,
    description: str,
    question: dict[str, Any],
    patience_s: float,
    when_overdue: Callable[[int], bool],
    approvers: list[str] | None = None,
) -> Answer | None:
    """:class:`cutover.phases.context.Ask` with the forms of tasks/forms.py."""
    form = gate_form(approvers or []) if kind == "gate" else point_of_no_return_form()
    answer = ask(form, key=key, description=description, question=question, patience_s=patience_s, when_overdue=when_overdue)
    if answer is None:
        return None
    return Answer(
        decision=str(answer["decision"]),
        decided_by=str(answer["decided_by"]),
        reason=str(answer.get("reason") or ""),
        acknowledge_writes_lost=bool(answer.get("acknowledge_writes_lost", False)),
    )


def _answer(form: type[RunInput], keyset: Any, flow_run_id: Any) -> dict[str, Any]:
    loaded = form.load(keyset, flow_run_id=flow_run_id)
    assert isinstance(loaded, RunInput), "loaded in a thread without an event loop"
    return loaded.model_dump()
