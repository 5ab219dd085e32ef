"""Starting a flow run of a deployment and following it in the terminal.

``start_run`` creates the run and returns at once (the worker executes it).
``follow_run`` polls the API and prints one line per task-run state change (time, task
run name, which for the cutover is the step id, and state), the flow run's own state
changes, and every pause at a gate; it returns the final state and, when readable, the
flow's returned value. Interrupting the follower (Ctrl-C) leaves the run going.
Polling rather than subscribing to events keeps the follower independent of websockets
and proxies between the operator and the server; one request per second is cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import structlog

from cutover.decisions import GO, NO_GO, QUESTION_SUFFIX, ROLL_BACK, ROLL_FORWARD
from cutover.orchestration import OrchestrationError
from cutover.orchestration.api import prefect_client
from cutover.summary import SUMMARY_ARTIFACT

log = structlog.get_logger()

PAGE = 200

Printer = Callable[[str], None]
# Called once per pause with (flow_run_id, pause_key); the demo answers gates with it.
PauseHandler = Callable[[str, str], None]


@dataclass
class RunOutcome:
    """How a followed flow run ended."""

    flow_run_id: str
    state_type: str  # COMPLETED, FAILED, CRASHED, CANCELLED, ... (or the last seen one)
    state_name: str
    message: str
    result: Any = None  # the flow's return value when it could be read
    final: bool = True  # False when following stopped before the run ended
    task_states: dict[str, str] = field(default_factory=dict)  # task run name -> last state name

    @property
    def ok(self) -> bool:
        """Completed, and the returned summary says ok: the only outcome worth exit 0."""
        return self.final and self.state_type == "COMPLETED" and isinstance(self.result, dict) and self.result.get("ok") is True


def start_run(api_url: str, deployment: str, parameters: dict[str, Any]) -> str:
    """Create a flow run of ``deployment`` ("flow/deployment") and return its id without
    waiting. OrchestrationError when the deployment does not exist or rejects the
    parameters (the deployment enforces its parameter schema)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    with prefect_client(api_url):
        try:
            flow_run = run_deployment(deployment, parameters=parameters, timeout=0)
        except ObjectNotFound as exc:
            raise OrchestrationError(
                f"no deployment {deployment} at {api_url}; apply prefect.yaml first (cutover demo does)"
            ) from exc
        except PrefectHTTPStatusError as exc:
            detail = exc.response.text[:300] if exc.response is not None else str(exc)
            raise OrchestrationError(f"{api_url} refused a run of {deployment}: {detail}") from exc
    created = str(flow_run.id)  # type: ignore[union-attr]  # run_deployment is sync here (no event loop)
    log.info("flow_run_created", deployment=deployment, flow_run_id=created)
    return created


def retry_run(api_url: str, flow_run_id: str) -> datetime:
    """Schedule a finished flow run of a deployment again (as ``prefect flow-run retry``
    does: a forced Scheduled state); the worker picks it up and the flow's cached steps
    are skipped. Returns the time it was scheduled. OrchestrationError when the run is not
    finished, has no deployment, or the server refuses."""
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    with prefect_client(api_url) as client:
        try:
            flow_run = client.read_flow_run(UUID(flow_run_id))
        except (ObjectNotFound, ValueError) as exc:
            raise OrchestrationError(f"no flow run {flow_run_id} at {api_url}") from exc
        finished = {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
        if flow_run.state is None or flow_run.state.type not in finished:
            current = flow_run.state.name if flow_run.state else "unknown"
            raise OrchestrationError(f"flow run {flow_run_id} is {current}; only a finished run can be rerun")
        if flow_run.deployment_id is None:
            raise OrchestrationError(f"flow run {flow_run_id} did not come from a deployment; no worker can rerun it")
        scheduled_at = datetime.now(UTC)
        response: Any = client.set_flow_run_state(flow_run.id, Scheduled(message="Rerun by cutover rerun"), force=True)
        if response.status != SetStateStatus.ACCEPT:
            reason = getattr(response.details, "reason", None) or response.status.value
            raise OrchestrationError(f"{api_url} did not reschedule flow run {flow_run_id}: {reason}")
    log.info("flow_run_rescheduled", flow_run_id=flow_run_id)
    return scheduled_at


def answer_pause(api_url: str, flow_run_id: str, run_input: dict[str, Any], what: str = "pause") -> None:
    """Answer a paused run's question through the API, as an operator's form in the UI would."""
    from prefect.flow_runs import resume_flow_run

    with prefect_client(api_url):
        try:
            resume_flow_run(UUID(flow_run_id), run_input=run_input)
        except Exception as exc:  # NotPausedError, FlowPauseTimeout, RuntimeError, HTTP errors
            raise OrchestrationError(f"could not answer the {what} of flow run {flow_run_id}: {exc}") from exc


def paused_question(api_url: str, flow_run_id: str) -> dict[str, Any] | None:
    """What a paused run asks (``kind`` gate or point-of-no-return, the gate's name, the
    command that answers it), or None when the run is not paused for a decision.
    OrchestrationError when there is no such run."""
    from prefect.exceptions import ObjectNotFound
    from prefect.input.actions import read_flow_run_input

    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        raise OrchestrationError(f"{flow_run_id!r} is not a flow run id") from None
    with prefect_client(api_url) as client:
        try:
            state = client.read_flow_run(run_id).state
        except ObjectNotFound:
            raise OrchestrationError(f"no flow run {flow_run_id} at {api_url}") from None
        if state is None or not state.is_paused() or not state.state_details.pause_key:
            return None
        key = state.state_details.pause_key
        value = read_flow_run_input(key + QUESTION_SUFFIX, flow_run_id=run_id)
    question = dict(value) if isinstance(value, dict) else {"kind": "pause"}
    question["pause_key"] = key
    return question


def answer_gate(api_url: str, flow_run_id: str, approve: bool, decided_by: str, reason: str, gate: str | None = None) -> None:
    """Answer a paused go/no-go gate (with ``gate``: only if that is the gate asking)."""
    question = paused_question(api_url, flow_run_id)
    if question is None or question.get("kind") != "gate":
        asked = "nothing" if question is None else question.get("kind", "something else")
        raise OrchestrationError(f"flow run {flow_run_id} is not waiting at a gate (it asks {asked})")
    if gate is not None and question.get("gate") != gate:
        raise OrchestrationError(f"flow run {flow_run_id} waits at gate {question.get('gate')}, not {gate}")
    run_input = {"decision": GO if approve else NO_GO, "decided_by": decided_by, "reason": reason}
    answer_pause(api_url, flow_run_id, run_input, what=f"gate {question.get('gate')}")
    log.info("gate_answered", flow_run_id=flow_run_id, approve=approve, decided_by=decided_by)


def answer_point_of_no_return(
    api_url: str, flow_run_id: str, roll_back: bool, acknowledge_writes_lost: bool, decided_by: str, reason: str
) -> None:
    """Answer the question a run asks when a step fails past the point of no return."""
    question = paused_question(api_url, flow_run_id)
    if question is None or question.get("kind") != "point-of-no-return":
        asked = (
            "nothing"
            if question is None
            else (f"gate {question.get('gate')}" if question.get("kind") == "gate" else question.get("kind"))
        )
        raise OrchestrationError(f"flow run {flow_run_id} is not waiting at the point of no return (it asks {asked})")
    answer_pause(
        api_url,
        flow_run_id,
        {
            "decision": ROLL_BACK if roll_back else ROLL_FORWARD,
            "acknowledge_writes_lost": acknowledge_writes_lost,
            "decided_by": decided_by,
            "reason": reason,
        },
        what="point-of-no-return question",
    )
    log.info("point_of_no_return_answered", flow_run_id=flow_run_id, roll_back=roll_back, decided_by=decided_by)


def flow_run_parameters(api_url: str, flow_run_id: str) -> dict[str, Any]:
    """The parameters a flow run was started with; OrchestrationError if there is no such run."""
    from prefect.exceptions import ObjectNotFound

    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        raise OrchestrationError(f"{flow_run_id!r} is not a flow run id") from None
    with prefect_client(api_url) as client:
        try:
            return dict(client.read_flow_run(run_id).parameters or {})
        except ObjectNotFound:
            raise OrchestrationError(f"no flow run {flow_run_id} at {api_url}") from None


def follow_run(
    api_url: str,
    flow_run_id: str,
    out: Printer = print,
    on_pause: PauseHandler | None = None,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    since: datetime | None = None,
) -> RunOutcome:
    """Print the run's progress until it ends (or ``timeout_s`` passes: then the outcome
    has ``final=False``). Task runs whose state is older than ``since`` (those of an earlier
    attempt, for a rerun) are not printed. ``on_pause`` is called once per pause."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    task_states: dict[str, tuple[str, str]] = {}  # task run id -> (name, state name)
    pauses_seen: set[str] = set()
    last_flow_state: str | None = None
    run_id = UUID(flow_run_id)
    task_filter = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]))
    with prefect_client(api_url) as client:
        while True:
            flow_run = client.read_flow_run(run_id)
            state = flow_run.state
            _print_task_changes(client, task_filter, task_states, since, out)
            if state is not None:
                name = state.name or state.type.value
                if name != last_flow_state:
                    last_flow_state = name
                    out(_line(state.timestamp, "flow run", name + (f": {state.message}" if state.message else "")))
                if state.is_paused():
                    pause = f"{state.id}:{state.state_details.pause_key}"
                    if pause not in pauses_seen:
                        pauses_seen.add(pause)
                        key = state.state_details.pause_key or "pause"
                        out(_line(state.timestamp, key, "Paused, waiting for a decision"))
                        for line in pause_instructions(api_url, flow_run_id, _read_question(run_id, key)):
                            out(" " * 10 + line)
                        if on_pause is not None:
                            on_pause(flow_run_id, key)
                if state.is_final():
                    # The engine reports task states through events: give the last ones a moment.
                    time.sleep(min(poll_s, 1.0))
                    _print_task_changes(client, task_filter, task_states, since, out)
                    return RunOutcome(
                        flow_run_id=flow_run_id,
                        state_type=state.type.value,
                        state_name=state.name or state.type.value,
                        message=state.message or "",
                        result=read_result(state),
                        task_states={name: s for name, s in task_states.values()},
                    )
            if deadline is not None and time.monotonic() >= deadline:
                return RunOutcome(
                    flow_run_id=flow_run_id,
                    state_type=state.type.value if state else "UNKNOWN",
                    state_name=(state.name or state.type.value) if state else "unknown",
                    message="still running when following stopped",
                    final=False,
                    task_states={name: s for name, s in task_states.values()},
                )
            time.sleep(poll_s)


def _read_question(run_id: UUID, key: str, wait_s: float = 5.0) -> dict[str, Any] | None:
    """The question beside the pause ``key`` (stored a moment after the pause itself)."""
    from prefect.input.actions import read_flow_run_input

    deadline = time.monotonic() + wait_s
    while True:
        value = read_flow_run_input(key + QUESTION_SUFFIX, flow_run_id=run_id)
        if isinstance(value, dict) or time.monotonic() >= deadline:
            return value if isinstance(value, dict) else None
        time.sleep(0.3)


def pause_instructions(api_url: str, flow_run_id: str, question: dict[str, Any] | None) -> list[str]:
    """What a paused run asks, where to answer it in the UI, and the command that answers
    it from a terminal: the lines ``cutover run``/``rerun`` print at every pause."""
    from cutover.orchestration.api import flow_run_link, ui_url_for

    link = flow_run_link(ui_url_for(api_url), flow_run_id)
    question = question or {}
    kind = question.get("kind")
    if kind == "gate":
        apps = question.get("applications") or []
        who = question.get("approvers") or []
        asked = f"go/no-go gate {question.get('gate')} for {len(apps)} application(s): {', '.join(apps)}"
        if who:
            asked += f" (approvers: {', '.join(who)})"
    elif kind == "point-of-no-return":
        asked = (
            "past the point of no return, after a failure of "
            + ", ".join(question.get("failed") or ["a step"])
            + ": roll forward or roll back?"
        )
    else:
        asked = "a decision"
    lines = [f"asks: {asked}", f"answer in the Prefect UI (Resume): {link}"]
    if question.get("command"):
        lines.append(f"or: {question['command']}")
    return lines


def summary_artifact(api_url: str, flow_run_id: str, key: str = SUMMARY_ARTIFACT) -> str | None:
    """The markdown of the run's summary artifact, or None when it has none."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with prefect_client(api_url) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
    return str(found[-1].data) if found else None


def _print_task_changes(
    client: Any, task_filter: Any, seen: dict[str, tuple[str, str]], since: datetime | None, out: Printer
) -> None:
    from prefect.client.schemas.sorting import TaskRunSort

    offset = 0
    changed = []
    while True:
        page = client.read_task_runs(
            task_run_filter=task_filter, sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=PAGE, offset=offset
        )
        for task_run in page:
            state = task_run.state
            if state is None:
                continue
            key = str(task_run.id)
            before = seen.get(key)
            seen[key] = (task_run.name, state.name)
            if before is not None and before[1] == state.name:
                continue
            if state.type.value in ("PENDING", "SCHEDULED"):
                continue  # waiting for upstream steps; its name is not yet the step id either
            if before is None and since is not None and state.timestamp < since:
                continue  # from an earlier attempt of this flow run
            changed.append((state.timestamp, task_run.name, state.name))
        if len(page) < PAGE:
            break
        offset += PAGE
    for when, name, state_name in sorted(changed):
        out(_line(when, name, state_name))


def _line(when: datetime | None, what: str, state: str) -> str:
    stamp = (when or datetime.now(UTC)).astimezone().strftime("%H:%M:%S")
    return f"{stamp}  {what:<40} {state}"


def read_result(state: Any) -> Any:
    """A final flow-run state's return value (for a Failed run, the data it failed with), or None when it
    cannot be read here, e.g. the result storage is on the worker's machine."""
    try:
        value = state.result(raise_on_failure=False)
    except Exception as exc:  # storage unreachable, result not persisted, unpicklable
        log.info("flow_run_result_unreadable", error=type(exc).__name__)
        return None
    return None if isinstance(value, BaseException) else value
