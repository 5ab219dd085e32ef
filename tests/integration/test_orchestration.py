"""Cutover's orchestration on a real Prefect server: the server's life cycle, deployment
runs through a process worker, rerun, cancel and crash of the flow-run process, gates
answered through the API, and the ``cutover run``/``rerun`` commands.

The flow is ``tests/flows_for_tests/sleepy.py`` (deployment ``sleepy/sleepy``), so these
tests do not depend on the cutover flow; it reports the pid of the process that ran it.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cutover.orchestration import OrchestrationError, owned_process
from cutover.orchestration.api import api_is_healthy, flow_run_link, prefect_client
from cutover.orchestration.follow import RunOutcome, answer_gate, follow_run, read_result, retry_run, start_run
from cutover.orchestration.server import RECORD_FILE, PrefectServer, running_server, start_server, stop_server
from cutover.orchestration.worker import PrefectWorker
from cutover.sandbox.info import ESTATE
from cutover.sandbox.processes import alive, descendants
from tests import conftest
from tests.prefect_fixtures import SLEEPY_DEPLOYMENT, TESTS_POOL

if not hasattr(conftest, "prefect_api"):
    # Until tests/conftest.py imports the session fixtures; importing them twice would
    # give this module a second session server.
    from tests.prefect_fixtures import prefect_api, tests_worker  # noqa: F401

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=PROJECT_DIR,
        env=env,
    )


def wait_for(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def flow_run_state(api_url: str, flow_run_id: str):  # type: ignore[no-untyped-def]
    from uuid import UUID

    with prefect_client(api_url) as client:
        return client.read_flow_run(UUID(flow_run_id)).state


def _migrated_database(source: Path, home: Path) -> None:
    """Copy the session server's database (a consistent snapshot through SQLite's backup
    API) so that a second server skips the schema migrations of a fresh one (~15 s)."""
    home.mkdir(parents=True)
    with sqlite3.connect(source) as src, sqlite3.connect(home / "prefect.db") as dst:
        src.backup(dst)


def test_server_starts_once_is_reused_and_stops_without_leftovers(prefect_api: PrefectServer, tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    _migrated_database(prefect_api.home / "prefect.db", home)
    server = start_server(home)
    try:
        assert api_is_healthy(server.api_url)
        assert (home / "prefect.db").exists(), "the SQLite database lives in the given home"
        again = start_server(home)
        assert again.pid == server.pid and again.started_s == 0.0, "a running server is reused"
        family = descendants(server.pid) | {server.pid}
    finally:
        stopped = stop_server(home)
    assert server.pid in stopped
    assert not any(alive(pid) for pid in family), "no process of the server survives stop"
    assert not api_is_healthy(server.api_url)
    assert running_server(home) is None
    assert stop_server(home) == [], "stopping a stopped server is a no-op"


def test_stop_never_signals_a_recorded_pid_that_is_not_ours(tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    stranger = subprocess.Popen(["sleep", "60"])  # same pid as recorded, but no marker
    try:
        owned_process.write_record(home / RECORD_FILE, {"pid": stranger.pid, "host": "127.0.0.1", "port": 1})
        assert running_server(home) is None
        assert stop_server(home) == []
        assert stranger.poll() is None, "the stranger process is still running"
    finally:
        stranger.kill()
        stranger.wait()


def test_deployment_run_completes_through_the_worker_in_the_project_dir(
    tests_worker: PrefectWorker, prefect_api: PrefectServer, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    flow_run_id = start_run(prefect_api.api_url, SLEEPY_DEPLOYMENT, {"pid_file": str(pid_file), "runbook": "runbooks/demo.yaml"})
    lines: list[str] = []
    outcome = follow_run(prefect_api.api_url, flow_run_id, out=lines.append, poll_s=0.5, timeout_s=RUN_TIMEOUT_S)

    assert outcome.state_type == "COMPLETED", (outcome, lines)
    assert outcome.ok
    result = outcome.result
    assert result["pid"] == pids_in(pid_file)[0] != os.getpid(), "the flow ran in a process of its own"
    assert result["cwd"] == str(PROJECT_DIR), "the pull step set the working directory to the project"
    assert outcome.task_states == {"sleepy/nap": "Completed"}
    assert any("sleepy/nap" in line and "Completed" in line for line in lines), lines
    with prefect_client(prefect_api.api_url) as client:
        from uuid import UUID

        assert client.read_flow_run(UUID(flow_run_id)).work_pool_name == TESTS_POOL


def test_rerun_of_a_completed_run_schedules_it_again_and_it_completes(
    tests_worker: PrefectWorker, prefect_api: PrefectServer, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    flow_run_id = start_run(prefect_api.api_url, SLEEPY_DEPLOYMENT, {"pid_file": str(pid_file), "runbook": "runbooks/demo.yaml"})
    first = follow_run(prefect_api.api_url, flow_run_id, out=lambda _: None, poll_s=0.5, timeout_s=RUN_TIMEOUT_S)
    assert first.ok and first.result["run_count"] == 1

    rerun = cli("rerun", flow_run_id, "--api", prefect_api.api_url)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"flow run {flow_run_id} scheduled again" in rerun.stdout
    assert "Completed" in rerun.stdout
    assert len(set(pids_in(pid_file))) == 2, "the rerun ran in a new flow-run process"
    assert read_result(flow_run_state(prefect_api.api_url, flow_run_id))["run_count"] == 2


def test_rerun_refuses_a_run_that_is_not_finished(tests_worker: PrefectWorker, prefect_api: PrefectServer) -> None:
    flow_run_id = start_run(prefect_api.api_url, SLEEPY_DEPLOYMENT, {"seconds": 60})
    try:
        with pytest.raises(OrchestrationError, match="only a finished run can be rerun"):
            retry_run(prefect_api.api_url, flow_run_id)
    finally:
        _cancel(prefect_api.api_url, flow_run_id)


def _cancel(api_url: str, flow_run_id: str) -> None:
    """What the UI's Cancel button does: ask for Cancelling; the worker does the killing."""
    from uuid import UUID

    from prefect.states import Cancelling

    with prefect_client(api_url) as client:
        client.set_flow_run_state(UUID(flow_run_id), Cancelling(message="cancelled by the test"), force=True)


def _running_pid(pid_file: Path) -> int:
    return wait_for(
        lambda: next((p for p in pids_in(pid_file) if alive(p)), None), RUN_TIMEOUT_S, f"a flow-run pid in {pid_file}"
    )


def test_cancelling_a_running_flow_run_kills_its_process(
    tests_worker: PrefectWorker, prefect_api: PrefectServer, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    flow_run_id = start_run(prefect_api.api_url, SLEEPY_DEPLOYMENT, {"seconds": 300, "pid_file": str(pid_file)})
    pid = _running_pid(pid_file)
    assert pid in descendants(tests_worker.pid), "the flow run is a child process of the worker"

    _cancel(prefect_api.api_url, flow_run_id)

    wait_for(lambda: not alive(pid), 60, f"flow-run process {pid} to be killed")
    outcome = follow_run(prefect_api.api_url, flow_run_id, out=lambda _: None, poll_s=0.5, timeout_s=60)
    assert outcome.state_type == "CANCELLED", outcome
    assert not outcome.ok


def test_cancelling_a_flow_run_also_kills_the_external_program_it_runs(
    tests_worker: PrefectWorker, prefect_api: PrefectServer, tmp_path: Path
) -> None:
    pid_file, program_pid_file = tmp_path / "pids", tmp_path / "program-pids"
    flow_run_id = start_run(
        prefect_api.api_url,
        SLEEPY_DEPLOYMENT,
        {"pid_file": str(pid_file), "program_seconds": 300, "program_pid_file": str(program_pid_file)},
    )
    flow_pid = _running_pid(pid_file)
    program_pid = _running_pid(program_pid_file)
    assert os.getpgid(program_pid) != os.getpgid(flow_pid), "the program runs in a process group of its own"

    _cancel(prefect_api.api_url, flow_run_id)

    wait_for(lambda: not alive(flow_pid), 60, f"flow-run process {flow_pid} to end")
    wait_for(lambda: not alive(program_pid), 30, f"external program {program_pid} to be killed")
    outcome = follow_run(prefect_api.api_url, flow_run_id, out=lambda _: None, poll_s=0.5, timeout_s=60)
    assert outcome.state_type == "CANCELLED", outcome


def test_a_flow_run_process_killed_with_sigkill_ends_crashed(
    tests_worker: PrefectWorker, prefect_api: PrefectServer, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    flow_run_id = start_run(prefect_api.api_url, SLEEPY_DEPLOYMENT, {"seconds": 300, "pid_file": str(pid_file)})
    pid = _running_pid(pid_file)
    wait_for(lambda: flow_run_state(prefect_api.api_url, flow_run_id).is_running(), 30, "the flow run to be Running")

    os.kill(pid, signal.SIGKILL)

    outcome = follow_run(prefect_api.api_url, flow_run_id, out=lambda _: None, poll_s=0.5, timeout_s=60)
    assert outcome.state_type == "CRASHED", outcome
    assert alive(tests_worker.pid), "the worker survives its flow run's death"


def test_a_paused_gate_is_answered_through_the_api_and_the_decision_reaches_the_flow(
    tests_worker: PrefectWorker, prefect_api: PrefectServer
) -> None:
    pauses: list[str] = []

    def operator(flow_run_id: str, key: str) -> None:
        pauses.append(key)
        answer_gate(prefect_api.api_url, flow_run_id, True, "test-operator", "evidence looks fine")

    flow_run_id = start_run(prefect_api.api_url, SLEEPY_DEPLOYMENT, {"gate": True})
    lines: list[str] = []
    outcome = follow_run(
        prefect_api.api_url, flow_run_id, out=lines.append, on_pause=operator, poll_s=0.5, timeout_s=RUN_TIMEOUT_S
    )

    assert pauses == ["gate-test"], "the follower reports the pause once, with its key"
    assert any("gate-test" in line and "Paused" in line for line in lines), lines
    assert outcome.ok, outcome
    assert outcome.result["decided_by"] == "test-operator"


def test_run_outcome_is_ok_only_when_completed_and_the_summary_says_ok() -> None:
    def outcome(state: str, result: object, final: bool = True) -> RunOutcome:
        return RunOutcome(flow_run_id="x", state_type=state, state_name=state.title(), message="", result=result, final=final)

    assert outcome("COMPLETED", {"ok": True}).ok
    assert not outcome("COMPLETED", {"ok": False}).ok
    assert not outcome("COMPLETED", None).ok, "an unreadable result is not proof of success"
    assert not outcome("FAILED", {"ok": True}).ok
    assert not outcome("CRASHED", {"ok": True}).ok
    assert not outcome("COMPLETED", {"ok": True}, final=False).ok


def test_cutover_run_waits_prints_the_ui_link_and_exits_0_on_success(
    tests_worker: PrefectWorker, prefect_api: PrefectServer
) -> None:
    done = cli("run", "runbooks/demo.yaml", "--deployment", SLEEPY_DEPLOYMENT, "--api", prefect_api.api_url, "--wait")

    assert done.returncode == 0, done.stdout + done.stderr
    flow_run_id = done.stdout.split("flow run ", 1)[1].split(":", 1)[0]
    assert flow_run_link(prefect_api.ui_url, flow_run_id) in done.stdout
    assert "sleepy/nap" in done.stdout and "Completed" in done.stdout


def test_cutover_run_rejects_a_bad_runbook_before_creating_a_run(prefect_api: PrefectServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cutover: x\napplicatons: []\n")

    done = cli("run", str(bad), "--api", prefect_api.api_url)

    assert done.returncode == 2
    assert str(bad) in done.stderr


def test_cutover_run_says_in_one_line_when_the_api_is_unreachable(tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}

    done = cli("run", "runbooks/demo.yaml", env=env, timeout=60)

    assert done.returncode == 1
    assert done.stderr.strip() == "cutover run: the Prefect API at http://127.0.0.1:9/api is not reachable (GET /health failed)"


def test_cutover_demo_runs_the_estate_to_the_end_and_leaves_nothing_running(tmp_path: Path) -> None:
    from cutover.orchestration.worker import running_worker
    from cutover.sandbox import lifecycle

    directory = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CUTOVER_"))}

    done = cli("demo", "--dir", str(directory), env=env, timeout=900)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "operator cutover-demo approves gate-" in out, "the demo answered the gate through the API"
    assert "cutover gemeente-werkendam: ok" in out
    assert "Prefect UI: http://127.0.0.1:" in out
    lines = out.splitlines()
    for app, databases in ESTATE.items():
        for db in databases:
            fields = next(line for line in lines if line.startswith(f"{app}/{db} ")).split()
            assert fields[1] in ("stream", "file") and int(fields[2]) > 0 and int(fields[3]) > 0, fields
            assert re.fullmatch(r"[0-9a-f]{64}", fields[-1]), f"a sha256 for {app}/{db}: {fields}"
        assert any(line.split()[:3] == [app, "passed", "switched"] for line in lines), app
    assert running_server(directory / "prefect") is None
    assert running_worker(directory / "prefect") is None
    assert not any(state.up for state in lifecycle.status(directory)), "the sandbox is down"
