"""A tiny flow for the orchestration tests: it naps in a task, can pause at a gate like the
cutover does, and tells which process ran it, so tests can prove a run went through the
worker, was rerun, or was killed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow, task
from prefect.runtime import flow_run

from cutover.decisions import GO
from cutover.process import run_program
from tasks.forms import gate_form
from tasks.pause import ask


@task(task_run_name="sleepy/nap")
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task(task_run_name="sleepy/program")
def program(seconds: float, pid_file: str) -> None:
    """An external program run the way the cutover's steps run pg_dump: in a process group
    of its own, through cutover.process. The shell records its pid, then becomes sleep."""
    run_program(["sh", "-c", f'echo $$ >> "{pid_file}"; exec sleep {seconds}'], timeout_s=None, log_name="sleep")


@flow(name="sleepy", persist_result=True)
def sleepy(
    seconds: float = 0.2,
    pid_file: str = "",
    gate: bool = False,
    ok: bool = True,
    runbook: str = "",
    program_seconds: float = 0,
    program_pid_file: str = "",
) -> dict:
    """Write this process's pid to ``pid_file`` (appending one line per run), nap, then
    optionally wait for a go/no-go decision; return a summary with ``ok``. Takes a
    ``runbook`` like the cutover flow: ``ok`` is False unless that path exists from the
    working directory the deployment's pull step chose. With ``program_seconds``, first
    runs an external program that long (its pid appended to ``program_pid_file``)."""
    if pid_file:
        with open(pid_file, "a") as out:
            out.write(f"{os.getpid()}\n")
    if program_seconds:
        program(program_seconds, program_pid_file)
    napped = nap(seconds)
    decided_by = None
    approved = True
    if gate:
        question = {"kind": "gate", "gate": "test", "command": "cutover decide RUN --gate test --go|--no-go --by NAME"}
        decision = ask(
            gate_form([]),
            key="gate-test",
            description="## A test gate",
            question=question,
            patience_s=300,
            when_overdue=lambda n: False,
            poll_s=1,
        )
        assert decision is not None, "nobody answered the test gate"
        decided_by, approved = decision["decided_by"], decision["decision"] == GO
    runbook_found = Path(runbook).is_file() if runbook else True
    return {
        "ok": ok and approved and runbook_found,
        "pid": os.getpid(),
        "napped": napped,
        "decided_by": decided_by,
        "run_count": flow_run.run_count,
        "cwd": str(Path.cwd()),
    }
