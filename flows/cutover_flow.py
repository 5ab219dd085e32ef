"""The cutover flow: plan the runbook, then run every step as a task named by its step id.

One flat flow (a retried child flow would repeat its tasks). Each step is submitted with
``wait_for`` edges from the plan, so independent chains overlap: while one database
imports, another exports. Step results are persisted and cached under
``cutover:run key:step id:inputs``; the run key is the flow run id, which a retry keeps, so
retrying the flow run (Prefect UI "Retry", ``prefect flow-run retry``, ``cutover rerun``)
skips finished steps and runs the failed one and what follows it. Smoke tests, the source
check and post-switch checks are never cached: they always look again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import structlog
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.states import Failed

from cutover.errors import PermanentStepError, RunbookError
from cutover.log import configure_logging
from cutover.phases import workspace
from cutover.plan import build_plan
from cutover.plan.build import Plan, Step
from cutover.plan.inputs import step_inputs
from cutover.runbook.model import Runbook
from cutover.summary import summarize, summary_markdown
from tasks import application, dns, files, freeze, gate, move, source_check
from tasks.common import runbook_at
from tasks.limits import ensure_limits
from tasks.sizes import measure_sizes

log = structlog.get_logger()

TASKS = {
    "freeze": freeze.freeze,
    "export": move.export,
    "transfer": move.transfer,
    "import": move.import_,
    "stream": move.stream,
    "verify": move.verify,
    "files": files.files,
    "start": application.start,
    "smoke": application.smoke,
    "gate": gate.gate,
    "source_check": source_check.source_check,
    "dns_switch": dns.dns_switch,
    "post_switch": dns.post_switch,
    "finalize": application.finalize,
}
ALWAYS_RERUN = {"smoke", "source_check", "post_switch"}


def _not_permanent(task, task_run, state) -> bool:
    """Retry transient failures only: a checksum mismatch will not fix itself."""
    return not isinstance(state.data, PermanentStepError)


def _options(runbook: Runbook, step: Step, run_key: str) -> dict[str, Any]:
    defaults = runbook.defaults
    options: dict[str, Any] = {
        "name": step.id,
        "task_run_name": step.id,
        "retries": defaults.retries,
        "retry_delay_seconds": [defaults.retry_delay_s * 2**i for i in range(max(defaults.retries, 1))],
        "retry_condition_fn": _not_permanent,
        # no timeout_seconds: Prefect cannot interrupt a task in a worker thread; the
        # external programs and remote commands a step runs carry defaults.timeout_s
        "persist_result": True,
    }
    if step.phase == "gate":
        options["retries"] = 0
    if step.phase in ALWAYS_RERUN:
        options["cache_policy"] = NO_CACHE
    else:
        key = f"{runbook.cutover}:{run_key}:{step.id}:{step_inputs(runbook, step)}"
        options["cache_key_fn"] = lambda context, parameters, key=key: key
    return options


def submit_plan(runbook_path: str, runbook: Runbook, plan: Plan, run_key: str) -> dict[str, PrefectFuture]:
    futures: dict[str, PrefectFuture] = {}
    for step in plan.steps.values():
        task = TASKS[step.phase].with_options(**_options(runbook, step, run_key))
        kwargs: dict[str, Any] = {"runbook_path": runbook_path, "step_id": step.id, "run_key": run_key}
        if step.phase in ("verify", "source_check"):
            kwargs["frozen"] = futures[f"{step.application}/freeze"]
        if step.phase == "gate":
            kwargs["evidence"] = {dep: futures[dep] for dep in step.depends_on}
        futures[step.id] = task.submit(**kwargs, wait_for=[futures[d] for d in step.depends_on])
    return futures


@flow(name="cutover", persist_result=True, log_prints=True)
def cutover(runbook: str = "runbooks/demo.yaml") -> dict[str, Any]:
    """Run the cutover a runbook describes. Ends Completed only when every step finished
    and verified; otherwise Failed, with the summary of what did and did not happen."""
    runbook_path = str(Path(runbook).resolve())
    try:
        loaded = runbook_at(runbook_path)
    except RunbookError as exc:
        return Failed(message="the runbook has problems:\n" + str(exc))
    run_key = str(flow_run.id or "local")
    audit = workspace.run_dir(loaded.cutover, run_key) / "audit.jsonl"
    configure_logging(audit_file=audit, console=True)
    log.info("cutover_started", cutover=loaded.cutover, run_key=run_key, audit_file=str(audit))

    sizes = measure_sizes.with_options(
        task_run_name="preflight/sizes",
        cache_key_fn=lambda *_: f"{loaded.cutover}:{run_key}:preflight/sizes",
        persist_result=True,
    )(runbook_path)
    plan = build_plan(loaded, sizes=sizes)
    log.info("plan_built", steps=len(plan.steps), critical_path_s=round(plan.estimate_s), methods=plan.methods)
    ensure_limits(loaded)

    futures = submit_plan(runbook_path, loaded, plan, run_key)
    wait(list(futures.values()))
    states = {sid: future.state for sid, future in futures.items()}
    results = {sid: future.result() for sid, future in futures.items() if states[sid].is_completed()}
    summary = summarize(loaded, plan, states, results)
    create_markdown_artifact(
        summary_markdown(summary), key="cutover-summary", description=f"Cutover {loaded.cutover}: summary"
    )
    log.info("cutover_finished", ok=summary["ok"], failed=summary["failed_steps"])
    if not summary["ok"]:
        return Failed(message=f"cutover {loaded.cutover} did not complete: failed {', '.join(summary['failed_steps']) or 'steps not run'}", data=summary)
    return summary


if __name__ == "__main__":
    cutover(os.environ.get("CUTOVER_RUNBOOK", "runbooks/demo.yaml"))
