"""The cutover flow: plan the runbook, then run every step as a task named by its step id.

One flat flow (a retried child flow would repeat its tasks). Each step is submitted with
``wait_for`` edges from the plan, so independent chains overlap: while one database
imports, another exports. Step results are persisted and cached under
``cutover:attempt key:step id:inputs``; the attempt key is the flow run id (which a retry
keeps) plus the number of rollbacks the run went through, so retrying the flow run
(Prefect UI "Retry", ``prefect flow-run retry``, ``cutover rerun``) skips finished steps and
runs the failed one and what follows it, while retrying a rolled-back run starts over.
Smoke tests, the source check and post-switch checks are never cached: they always look again.

The run has two halves, split at the point of no return (the runbook's
``point_of_no_return``, by default the DNS switch):

* before it, every step of every application runs; if one fails for good (its retries
  could not fix it), nothing crosses the point of no return: the run rolls back what it
  did, in reverse order, and ends Failed with the rollback in its summary;
* after it, a failure does not roll back by itself: the run pauses and asks the operator
  (roll forward by retrying later, or roll back, acknowledging the writes the new site
  took since the switch). A failure at the switch itself that switched nothing still
  rolls back on its own: the point was not crossed.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterId
from prefect.client.schemas.objects import State, StateType
from prefect.futures import PrefectDistributedFuture, PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.states import Failed

from cutover import journal as rules
from cutover.errors import RunbookError
from cutover.journal import Attempts, Journal
from cutover.log import configure_logging
from cutover.phases import point_of_no_return as ponr
from cutover.phases import workspace
from cutover.plan import build_plan
from cutover.plan.affected import affected_by
from cutover.plan.build import Plan, Step
from cutover.plan.phases import PHASES
from cutover.plan.placement import site_of
from cutover.plan.rollback import past_point_of_no_return
from cutover.preflight import Report
from cutover.process import STOPPING, stop_everything
from cutover.runbook.model import Runbook
from cutover.summary import SUMMARY_ARTIFACT, summarize, summary_markdown
from flows import report_hook
from flows.compensations import failure_message, retry_options, run_rollback
from tasks import plans, site_steps, steps
from tasks.common import ATTEMPT_TAG, once, runbook_at, step_tags
from tasks.journal import run_journal
from tasks.limits import ensure_limits
from tasks.pause import prefect_ask
from tasks.preflight import preflight
from tasks.sizes import measure_sizes
from tasks.step_run import emit

log = structlog.get_logger()

# How often a placed step held back for its upstream steps is looked at again.
HAND_OUT_POLL_S = 0.5
API_PAGE = 200  # the most task runs the Prefect API returns for one read


def _options(runbook: Runbook, step: Step, attempt_key: str) -> dict[str, Any]:
    spec = PHASES[step.phase]
    options: dict[str, Any] = {
        "name": step.id,
        "task_run_name": step.id,
        "tags": step_tags(step, attempt_key),
        **retry_options(runbook),
        # no timeout_seconds: Prefect cannot interrupt a task in a worker thread; the
        # external programs and remote commands a step runs carry defaults.timeout_s
    }
    if not spec.retried:
        options["retries"] = 0
    key = site_steps.step_cache_key(runbook, step, attempt_key)
    if spec.always_rerun:
        options["cache_key_fn"] = once(key)
    else:
        options["cache_key_fn"] = lambda context, parameters, key=key: key
    return options


def after_point_of_no_return(plan: Plan) -> set[str]:
    """The irreversible steps and every step that waits for one of them."""
    after = {sid for sid, step in plan.steps.items() if step.irreversible}
    for sid, step in plan.steps.items():  # topological order: dependencies come first
        if any(dep in after for dep in step.depends_on):
            after.add(sid)
    return after


def stages(plan: Plan) -> list[set[str]]:
    """The steps in three stages: before any gate; the gates and what waits for them
    before the point of no return; from the point of no return on. A failure in the
    first two rolls back by itself (what, the runbook's on_failure says); in the last,
    the run asks."""
    after = after_point_of_no_return(plan)
    held = set()
    for sid, step in plan.steps.items():
        if sid not in after and (step.phase == "gate" or any(dep in held for dep in step.depends_on)):
            held.add(sid)
    return [set(plan.steps) - after - held, held, after]


def submit_step(
    runbook_path: str,
    runbook: Runbook,
    step: Step,
    attempt_key: str,
    flow_run_id: str,
    run_key: str,
    upstream: dict[str, Any],
    wait_for: list[Any],
    rolled_back: dict[str, str],
) -> PrefectFuture[Any]:
    """One step as the one step task named by its step id: in this flow run's process, or,
    when the runbook places its phase at a site, on that site's step worker."""
    site = site_of(runbook, step)
    if site is not None:
        return site_steps.submit(
            site,
            runbook_path=runbook_path,
            step=step,
            attempt_key=attempt_key,
            flow_run_id=flow_run_id,
            run_key=run_key,
            upstream=upstream,
            wait_for=wait_for,
            rolled_back=rolled_back if step.phase == "gate" else {},
            tags=step_tags(step, attempt_key),
        )
    return steps.run.with_options(**_options(runbook, step, attempt_key)).submit(
        runbook_path=runbook_path,
        step=step,
        attempt_key=attempt_key,
        flow_run_id=flow_run_id,
        run_key=run_key,
        upstream=upstream,
        rolled_back=rolled_back if step.phase == "gate" else {},
        wait_for=wait_for,
        return_state=False,
    )


class Progress:
    """What the run did so far: a future per submitted step, the applications still going
    to the new site, and those rolled back (with why)."""

    def __init__(self, runbook_path: str, runbook: Runbook, plan: Plan, attempts: Attempts, flow_run_id: str) -> None:
        self.runbook_path, self.runbook, self.plan, self.attempts, self.flow_run_id = (
            runbook_path,
            runbook,
            plan,
            attempts,
            flow_run_id,
        )
        self.keys = {app.name: attempts.of(app.name) for app in runbook.applications}
        self.futures: dict[str, PrefectFuture[Any]] = {}
        self.active = [app.name for app in runbook.applications]
        self.rolled_back: dict[str, str] = {}
        self.rollbacks: list[dict[str, Any]] = []
        self.ended: set[str] = set()  # submitted steps known to have ended (placed steps wait for them)

    def attempt_of(self, step: Step) -> str:
        if step.application is not None:
            return self.attempts.of(step.application)
        return self.attempts.of_gate(self.held(step))

    def held(self, gate: Step) -> list[str]:
        """The applications a gate holds that are still going (in plan order)."""
        covered = {self.plan.steps[dep].application for dep in gate.depends_on}
        return [name for name in self.active if name in covered]

    def submit(self, stage: set[str]) -> None:
        """Every step of ``stage`` of the applications still going, in plan order, waiting for
        its dependencies and given the results of the steps it reads. A step placed at a
        site is handed out only once the steps it waits for have ended (a step worker
        waiting for another process's step could miss its end), and so is every step that
        waits for one not yet handed out."""
        due = [step for step in self.plan.steps.values() if self._due(step, stage)]
        try:
            self.hand_out_in_order(due)
            wait(list(self.futures.values()))
        except BaseException:
            # interrupted (the run is cancelled: Prefect raises in this thread): end the
            # steps' programs now, local and remote; their threads would run on otherwise
            stop_everything()
            raise

    def hand_out_in_order(self, due: list[Step]) -> None:
        """Submit ``due`` (in plan order), each once it may be handed out."""
        while due:
            held = {step.id for step in due}
            self._learn_ended(due, held)
            later = []
            for step in due:
                if self._can_hand_out(step, held):
                    self._hand_out(step)
                    held.discard(step.id)
                else:
                    later.append(step)
            if len(later) == len(due):
                time.sleep(HAND_OUT_POLL_S)
            due = later

    def _due(self, step: Step, stage: set[str]) -> bool:
        if step.id not in stage or step.id in self.futures:
            return False
        if step.application is not None and step.application not in self.active:
            return False
        return step.application is not None or bool(self.held(step))  # not a gate of rolled-back applications only

    def _waiting_on(self, step: Step) -> list[str]:
        return [*step.depends_on, *step.reads]

    def _learn_ended(self, due: list[Step], held: set[str]) -> None:
        """Find out which of the steps the placed ``due`` steps wait for have ended since the
        last pass: the site steps' states in one request per 200 (a read per step, every
        pass, would keep the server busy with hundreds of waiting steps)."""
        asked = {
            sid
            for step in due
            if site_of(self.runbook, step) is not None
            for sid in self._waiting_on(step)
            if sid not in held and sid not in self.ended and self.going(sid)
        }
        remote = {sid: f for sid in asked if isinstance(f := self.futures[sid], PrefectDistributedFuture)}
        self.ended.update(sid for sid in asked - set(remote) if self.futures[sid].state.is_final())
        ids = [future.task_run_id for future in remote.values()]
        if not ids:
            return
        final: set[UUID] = set()
        with get_client(sync_client=True) as client:
            for at in range(0, len(ids), API_PAGE):
                page = ids[at : at + API_PAGE]
                runs = client.read_task_runs(task_run_filter=TaskRunFilter(id=TaskRunFilterId(any_=page)), limit=len(page))
                final.update(run.id for run in runs if run.state is not None and run.state.is_final())
        self.ended.update(sid for sid, future in remote.items() if future.task_run_id in final)

    def _can_hand_out(self, step: Step, held: set[str]) -> bool:
        upstream = self._waiting_on(step)
        if any(sid in held for sid in upstream):
            return False
        if site_of(self.runbook, step) is None:
            return True
        return all(sid in self.ended for sid in upstream if self.going(sid))

    def _hand_out(self, step: Step) -> None:
        self.futures[step.id] = submit_step(
            self.runbook_path,
            self.runbook,
            step,
            self.attempt_of(step),
            self.flow_run_id,
            self.attempts.run,
            upstream={sid: self.futures[sid] for sid in step.reads if self.going(sid)},
            wait_for=[self.futures[d] for d in step.depends_on if self.going(d)],
            rolled_back=dict(self.rolled_back),
        )

    def going(self, step_id: str) -> bool:
        """Whether ``step_id`` was submitted and belongs to an application still going."""
        return step_id in self.futures and self.plan.steps[step_id].application in (None, *self.active)

    def failures(self) -> list[str]:
        return [sid for sid, future in self.futures.items() if failed(future.state)]

    def started(self) -> set[str]:
        return {sid for sid, future in self.futures.items() if started(future.state)}

    def unfinished(self, stage: set[str]) -> list[str]:
        """The steps of ``stage`` that were submitted and did not complete: failed, crashed,
        or never run because a step they wait for did not complete."""
        return [sid for sid in stage if sid in self.futures and self.going(sid) and not self.futures[sid].state.is_completed()]

    def roll_back(self, failures: list[str]) -> bool:
        """Roll back what ``failures`` (steps before the point of no return that did not
        complete) take with them, by the runbook's on_failure; a gate that did not pass (a
        no-go) takes every application still going. True when some applications go on."""
        failed_apps = [a for a in dict.fromkeys(self.plan.steps[sid].application for sid in failures) if a]
        if any(self.plan.steps[sid].phase == "gate" for sid in failures):
            reasons = {name: "no-go at the gate" for name in self.active}
        else:
            reasons = {name: why for name, why in affected_by(self.runbook, failed_apps).items() if name in self.active}
        log.warning("rolling_back", applications=reasons)
        outcome = run_rollback(
            self.runbook_path,
            self.runbook,
            self.plan,
            self.started(),
            self.keys,
            self.attempts.run,
            self.flow_run_id,
            list(reasons),
        )
        outcome["why"] = reasons
        self.rollbacks.append(outcome)
        self.rolled_back.update(reasons)
        self.active = [name for name in self.active if name not in reasons]
        return bool(self.active) and outcome["rolled_back"]

    def rollback_summary(self) -> dict[str, Any] | None:
        """Every rollback of the run as one: what was undone, in order, and what is left."""
        if not self.rollbacks:
            return None
        return {
            "rolled_back": all(r["rolled_back"] for r in self.rollbacks),
            "undone": [step for r in self.rollbacks for step in r["undone"]],
            "failed": {k: v for r in self.rollbacks for k, v in r["failed"].items()},
            "by_hand": [item for r in self.rollbacks for item in r["by_hand"]],
            "applications": dict(self.rolled_back),
            "partial": bool(self.active),
        }


def started(state: Any) -> bool:
    """Whether a step got as far as running (and so may have changed something)."""
    return state is not None and state.type not in (StateType.PENDING, StateType.SCHEDULED)


def failed(state: Any) -> bool:
    return state is not None and (state.is_failed() or state.is_crashed())


@task(name="point-of-no-return", task_run_name="point-of-no-return", cache_key_fn=once("point-of-no-return"), persist_result=True)
def ask_past_the_point(
    runbook_path: str,
    run_key: str,
    attempt_keys: dict[str, str],
    flow_run_id: str,
    run_count: int,
    failed_steps: dict[str, str],
    timeout_s: int,
) -> dict[str, Any]:
    """Pause and ask the operator: roll forward or roll back (cutover.phases.point_of_no_return)."""
    runbook = runbook_at(runbook_path)
    return ponr.ask_operator(
        runbook,
        run_journal(flow_run_id),
        run_key=run_key,
        attempt_keys=attempt_keys,
        flow_run_id=flow_run_id,
        run_count=run_count,
        failed=failed_steps,
        timeout_s=timeout_s,
        ask=prefect_ask,
        emit=lambda event, resource, payload: emit(runbook.cutover, event, resource, payload),
    )


def run_name() -> str:
    """``<cutover> <start time>``: what the run is, in the UI's list of runs. A retry keeps
    the name its first attempt got."""
    current = flow_run.name or ""
    parameters = flow_run.parameters or {}
    try:
        cutover_name = runbook_at(str(Path(parameters.get("runbook", "runbooks/demo.yaml")).resolve())).cutover
    except Exception:  # a bad runbook still gets a run; the flow says what is wrong with it
        cutover_name = Path(str(parameters.get("runbook", "cutover"))).stem
    if current.startswith(cutover_name + " "):
        return current
    return f"{cutover_name} {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M')}"


@flow(
    name="cutover",
    flow_run_name=run_name,
    persist_result=True,
    log_prints=True,
    on_completion=report_hook.AT_CUTOVER_END,
    on_failure=report_hook.AT_CUTOVER_END,
    on_crashed=report_hook.AT_CUTOVER_END,
    on_cancellation=report_hook.AT_CUTOVER_END,
)
def cutover(
    runbook: str = "runbooks/demo.yaml", decision_timeout_s: int = 3600, outside_window: bool = False
) -> dict[str, Any] | State[Any]:
    """Run the cutover a runbook describes. Ends Completed only when every step finished
    and verified; otherwise Failed, with the summary of what did and did not happen (and
    what a rollback undid). First of all, the preflight: a red item stops the run before
    anything is frozen. ``decision_timeout_s``: how long to wait for the operator's answer
    when a step fails past the point of no return. ``outside_window``: run although now
    is outside the runbook's window (a rehearsal, the demo)."""
    runbook_path = str(Path(runbook).resolve())
    try:
        loaded = runbook_at(runbook_path)
    except RunbookError as exc:
        return Failed(message="the runbook has problems:\n" + str(exc))
    flow_run_id = str(flow_run.id or "local")
    STOPPING.clear()  # a flow run in a process that ran a cancelled one before (tests) starts afresh
    journal: Journal = run_journal(flow_run_id)
    if rules.unfinished_rollback(journal):
        return Failed(
            message=f"a rollback of this run did not finish; finish it first (cutover rollback {flow_run_id}), then retry"
        )
    now = rules.attempts(flow_run_id, journal)
    run_key = now.run  # the run's own things (plan, audit log, sizes); each step works under its application's key
    keys = {app.name: now.of(app.name) for app in loaded.applications}
    audit = workspace.run_dir(loaded.cutover, run_key) / "audit.jsonl"
    configure_logging(audit_file=audit, console=True)
    log.info("cutover_started", cutover=loaded.cutover, attempt_key=run_key, audit_file=str(audit))

    checked = preflight.with_options(
        cache_key_fn=once(f"{loaded.cutover}:preflight"), persist_result=True, tags=[f"{ATTEMPT_TAG}{run_key}", "phase:preflight"]
    )(runbook_path, live=True, outside_window=outside_window, attempt_keys=keys)
    if not checked["ok"]:
        report = Report.from_dict(checked)
        log.error("preflight_red", red=[f"{i.area} {i.subject}" for i in report.red])
        return Failed(
            message=report.summary() + "; nothing was changed",
            data={"cutover": loaded.cutover, "ok": False, "preflight": checked},
        )
    sizes = measure_sizes.with_options(
        task_run_name="preflight/sizes",
        cache_key_fn=lambda *_: f"{loaded.cutover}:{run_key}:preflight/sizes",
        persist_result=True,
    )(runbook_path)
    plan = build_plan(loaded, sizes=sizes)
    plans.remember(journal, flow_run_id, run_key, plan)  # the rollback and the summary read the plan that ran
    log.info("plan_built", steps=len(plan.steps), critical_path_s=round(plan.estimate_s), methods=plan.methods)
    ensure_limits(loaded)

    run = Progress(runbook_path, loaded, plan, now, flow_run_id)
    before_gates, held, after = stages(plan)
    decision: dict[str, Any] | None = None
    going = True
    for stage in (before_gates, held):
        run.submit(stage)
        unfinished = run.unfinished(stage)
        if any(failed(run.futures[sid].state) for sid in unfinished):
            going = run.roll_back(unfinished)
        if not going:
            break
    if going:
        before = set(run.futures)
        run.submit(after)
        failures = [sid for sid in run.failures() if sid not in before]
        if failures:
            crossed = past_point_of_no_return(
                plan,
                started=run.started(),
                completed={sid for sid, future in run.futures.items() if future.state.is_completed()},
                dns_switched=lambda: ponr.switched_anything(loaded, journal, keys),
            )
            if not crossed:  # a switch that switched nothing: as before the point
                run.roll_back(failures)
            else:
                decision = ask_past_the_point.with_options(tags=[f"{ATTEMPT_TAG}{run_key}", "decision"])(
                    runbook_path,
                    run_key,
                    keys,
                    flow_run_id,
                    flow_run.run_count or 1,
                    {sid: failure_message(run.futures[sid].state) for sid in failures},
                    decision_timeout_s,
                )
                if decision["roll_back"] and decision["acknowledged"]:
                    _roll_back_all(run)

    states = {sid: run.futures[sid].state if sid in run.futures else None for sid in plan.steps}
    results = {sid: future.result() for sid, future in run.futures.items() if future.state.is_completed()}
    errors = {sid: failure_message(run.futures[sid].state) for sid in run.failures()}
    rollback = run.rollback_summary()
    summary = summarize(loaded, plan, states, results, rollback=rollback, decision=decision, errors=errors)
    create_markdown_artifact(summary_markdown(summary), key=SUMMARY_ARTIFACT, description=f"Cutover {loaded.cutover}: summary")
    log.info("cutover_finished", ok=summary["ok"], failed=summary["failed_steps"], rolled_back=list(run.rolled_back))
    if not summary["ok"]:
        return Failed(message=_failure_message(loaded.cutover, errors, rollback, decision), data=summary)
    return summary


def _roll_back_all(run: Progress) -> None:
    """Past the point of no return, an acknowledged rollback undoes every application still going."""
    reasons = {name: "rolled back past the point of no return" for name in run.active}
    outcome = run_rollback(
        run.runbook_path, run.runbook, run.plan, run.started(), run.keys, run.attempts.run, run.flow_run_id, list(reasons)
    )
    outcome["why"] = reasons
    run.rollbacks.append(outcome)
    run.rolled_back.update(reasons)
    run.active = []


def _failure_message(name: str, errors: dict[str, str], rollback: dict[str, Any] | None, decision: dict[str, Any] | None) -> str:
    failed = "; ".join(f"{sid} ({error})" for sid, error in errors.items())
    what = f"cutover {name} did not complete: failed {failed or 'steps not run'}"
    if rollback is not None:
        if rollback["rolled_back"] and rollback.get("partial"):
            back = ", ".join(rollback["applications"])
            return (
                what
                + f"; partly cut over: rolled back {back} (undone: {', '.join(rollback['undone']) or 'nothing had changed'}); the others went on"
            )
        if rollback["rolled_back"]:
            return what + "; rolled back: " + (", ".join(rollback["undone"]) or "nothing had changed")
        return (
            what
            + "; ROLLBACK INCOMPLETE, left to do by hand: "
            + "; ".join(f"{i['step']}: {i['to_do']}" for i in rollback["by_hand"])
        )
    if decision is not None:
        if decision["roll_back"] and not decision["acknowledged"]:
            return what + "; past the point of no return; rollback refused: the writes since the switch were not acknowledged"
        return (
            what
            + f"; past the point of no return; rolling forward ({decision['decided_by']}: {decision['reason']}): fix the cause and retry the run"
        )
    return what


if __name__ == "__main__":
    cutover(os.environ.get("CUTOVER_RUNBOOK", "runbooks/demo.yaml"))
