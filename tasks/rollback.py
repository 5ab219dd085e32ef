"""rollback/<step id>: undo one step (see cutover.phases.rollback for what undoes what),
and point-of-no-return: ask the operator what to do when a step fails after it."""

from __future__ import annotations

from typing import Any

import structlog
from prefect import task
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run

from cutover.errors import PermanentStepError
from cutover.gates import PointOfNoReturnDecision
from cutover.phases import database, rollback
from cutover.plan.rollback import rollback_id
from cutover.step_run import run_step
from tasks.common import parts, runbook_at
from tasks.dns import DnsJournal

log = structlog.get_logger()


@task(name="rollback")
def compensate(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    """Undo ``step_id`` of the run (generation) ``run_key``."""
    runbook = runbook_at(runbook_path)
    app_name, segment, *rest = parts(step_id)
    app = runbook.application(app_name)

    def work() -> dict[str, Any]:
        if segment == "freeze":
            return rollback.unfreeze_application(runbook, app, run_key)
        if segment in ("import", "stream"):
            return rollback.undo_target_database(database.find_move(runbook, app_name, rest[0], run_key))
        if segment == "start":
            return rollback.stop_application(runbook, app)
        if segment == "dns":
            return rollback.revert_dns(runbook, app, DnsJournal(run_key, app.name).get())
        raise PermanentStepError(f"step {step_id} has no compensation")

    return run_step(runbook.cutover, rollback_id(step_id), "rollback", work, done="compensated")


def writes_since_switch(runbook_path: str, run_key: str) -> dict[str, int | str]:
    """Per target database of every application whose DNS was (partly) switched: rows
    written since the switch."""
    runbook = runbook_at(runbook_path)
    writes: dict[str, int | str] = {}
    for app in runbook.applications:
        entry = DnsJournal(run_key, app.name).get()
        if not entry or not entry.get("switched"):
            continue
        try:
            writes.update(rollback.target_writes_since(runbook, app, run_key, entry.get("writes_baseline") or {}))
        except Exception as exc:  # a target that cannot be counted must not hide the question
            for db in app.databases:
                writes[f"{app.name}/{db.name}"] = f"unknown ({type(exc).__name__})"
    return writes


def switched_anything(runbook_path: str, run_key: str) -> list[str]:
    """The DNS names any switch of this run changed (from the switches' journals)."""
    runbook = runbook_at(runbook_path)
    names: list[str] = []
    for app in runbook.applications:
        entry = DnsJournal(run_key, app.name).get()
        names += (entry or {}).get("switched", [])
    return names


@task(name="point-of-no-return")
def point_of_no_return(runbook_path: str, run_key: str, pause_key: str, failed: list[str], timeout_s: int) -> dict[str, Any]:
    """Pause the run and ask: roll forward (retry later) or roll back past the point of
    no return, showing how many writes the target databases took since the switch."""
    writes = writes_since_switch(runbook_path, run_key)
    description = _question_markdown(failed, writes)
    try:
        decision = pause_flow_run(
            wait_for_input=PointOfNoReturnDecision.with_initial_data(
                description=description, roll_back=False, acknowledge_writes_lost=False, decided_by=""
            ),
            timeout=timeout_s,
            poll_interval=2,
            key=pause_key,
        )
    except FlowPauseTimeout:
        outcome = {"roll_back": False, "acknowledged": False, "decided_by": "nobody", "reason": f"no answer within {timeout_s} s", "writes": writes}
        log.warning("point_of_no_return_unanswered", **outcome)
        return outcome
    outcome = {
        "roll_back": decision.roll_back,
        "acknowledged": decision.acknowledge_writes_lost,
        "decided_by": decision.decided_by,
        "reason": decision.reason,
        # counted again: the new site went on taking writes while the question waited
        "writes": writes_since_switch(runbook_path, run_key),
    }
    log.info("point_of_no_return_decided", **outcome)
    return outcome


def _question_markdown(failed: list[str], writes: dict[str, int | str]) -> str:
    lines = [
        "## Past the point of no return: roll forward or roll back?",
        "",
        "Failed after the switch: " + ", ".join(f"`{s}`" for s in failed),
        "",
        "| target database | rows written since the switch (when this was asked) |",
        "|---|---:|",
        *[f"| {key} | {count} |" for key, count in sorted(writes.items())],
        "",
        "**Roll forward**: leave *roll back* off. The run ends Failed; fix the cause and retry the run.",
        "",
        "**Roll back**: DNS back to the old site, the target stopped, the sources writable again. "
        "Tick *acknowledge writes lost*: the writes above exist only on the target and will not be on the source.",
    ]
    return "\n".join(lines)
