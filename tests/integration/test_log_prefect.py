"""structlog lines inside Prefect runs reach the run's logs on a real Prefect server
(the session's ``prefect_api``, see tests/prefect_fixtures.py), once each and without
secrets."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid

import pytest
import structlog

from cutover.log import bind_step, configure_logging, flush_logging, reset_logging
from cutover.redaction import REDACTED, forget_secrets

pytestmark = pytest.mark.integration

SECRET = "pr3fect-Run-S3cret"
log = structlog.get_logger()


@pytest.fixture
def logging_to(tmp_path, prefect_api):
    audit = tmp_path / "audit.jsonl"
    forget_secrets()
    configure_logging(audit_file=audit, secrets=[SECRET])
    yield audit
    reset_logging()
    forget_secrets()


def read_run_logs(flow_run_id: uuid.UUID, expect: str, timeout_s: float = 20.0) -> list:
    """The flow run's logs from the API, once a line containing ``expect`` has arrived
    (the API log worker sends in batches)."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                sort=LogSort.TIMESTAMP_ASC,
            )
            if any(expect in entry.message for entry in logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.3)


def test_structlog_lines_in_flow_and_task_runs_reach_prefect_run_logs_once_and_redacted(logging_to, capsys):
    from prefect import flow, get_run_logger, task

    @task
    def export_step() -> None:
        with bind_step("gemeente-werkendam", "burgerzaken/export/bzk"):
            log.info("export_started", dsn=f"postgresql://migrate:{SECRET}@127.0.0.1:5432/bzk", password=SECRET)
            logging.getLogger("paramiko.transport").info("Authentication (password) with %s", SECRET)

    @task
    def failing_step() -> None:
        raise ConnectionRefusedError(f"could not log in with {SECRET}")

    @flow(name="log-bridge-probe")
    def probe() -> None:
        log.info("flow_started", note=f"token {SECRET}")
        export_step()
        export_step.submit().wait()  # a task in a worker thread: context travels with it
        get_run_logger().info("native prefect line with %s", SECRET)
        failing_step(return_state=True)
        log.info("flow_finishing")

    state = probe(return_state=True)
    flush_logging()
    flow_run_id = state.state_details.flow_run_id
    logs = read_run_logs(flow_run_id, expect="flow_finishing")
    messages = [entry.message for entry in logs]
    everything = "\n".join(messages)

    # every structlog line and the bridged library line are in the run's logs, once
    assert sum("flow_started" in m for m in messages) == 1
    assert sum("export_started" in m for m in messages) == 2
    assert sum("Authentication (password) with" in m for m in messages) == 2
    assert sum("flow_finishing" in m for m in messages) == 1
    # Prefect's own line still arrives once, through its own handler
    assert sum("native prefect line with" in m for m in messages) == 1
    # lines logged inside a task are attached to that task run
    export_lines = [entry for entry in logs if "export_started" in entry.message]
    assert all(entry.task_run_id is not None for entry in export_lines)
    assert "step_id=burgerzaken/export/bzk" in export_lines[0].message
    # the failed task's traceback, logged by Prefect itself, is there but redacted
    assert any("ConnectionRefusedError" in m for m in messages)
    assert f"could not log in with {REDACTED}" in everything
    # ... and no secret anywhere in the UI
    assert SECRET not in everything
    assert f"password={REDACTED}" in everything

    # the audit file has the same lines with the run ids, and no secret
    audit_text = logging_to.read_text(encoding="utf-8")
    assert SECRET not in audit_text
    audit = [json.loads(line) for line in audit_text.splitlines()]
    started = next(line for line in audit if line["event"] == "flow_started")
    assert started["flow_run_id"] == str(flow_run_id)
    exported = [line for line in audit if line["event"] == "export_started"]
    assert len(exported) == 2 and all(line["task_run_id"] for line in exported)

    # the console shows each line once (Prefect's console handler is not doubling them)
    console = capsys.readouterr().err
    assert SECRET not in console
    assert console.count("flow_started") == 1
    assert console.count("native prefect line with") == 1


def test_importing_prefect_after_configuring_does_not_double_console_lines(tmp_path):
    # The CLI configures logging before anything imports Prefect; Prefect's import then
    # runs its own logging set-up, which must leave our console as the only one.
    code = (
        "import logging, structlog;"
        "from cutover.log import configure_logging;"
        f"configure_logging(audit_file=__import__('pathlib').Path({str(tmp_path / 'a.jsonl')!r}), secrets=[{SECRET!r}]);"
        "import prefect;"
        "structlog.get_logger().info('after_prefect_import');"
        f"logging.getLogger('prefect.flow_runs').warning('run logger says %s', {SECRET!r})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("after_prefect_import") == 1, done.stderr
    assert done.stderr.count("run logger says") == 1, done.stderr
    assert SECRET not in done.stderr
    events = [json.loads(line)["event"] for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert events == ["after_prefect_import", f"run logger says {REDACTED}"]


def test_process_that_configures_logging_before_importing_prefect_still_redacts_run_logs(tmp_path, prefect_api):
    # The real order in the CLI: logging first, Prefect imported later, then a flow run
    # whose Prefect-native lines (sent by Prefect's own handler) must be redacted too.
    script = tmp_path / "probe.py"
    script.write_text(
        "import logging, sys, structlog\n"
        "from pathlib import Path\n"
        "from cutover.log import configure_logging, flush_logging\n"
        f"configure_logging(audit_file=Path({str(tmp_path / 'a.jsonl')!r}), secrets=[{SECRET!r}])\n"
        "from prefect import flow, get_run_logger\n"
        "@flow(name='late-prefect-probe')\n"
        "def probe():\n"
        f"    get_run_logger().info('native line with %s', {SECRET!r})\n"
        f"    structlog.get_logger().info('structlog_line', token={SECRET!r})\n"
        "state = probe(return_state=True)\n"
        "flush_logging()\n"
        "print(state.state_details.flow_run_id)\n"
    )
    env = {**os.environ, **prefect_api.client_environment(), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    flow_run_id = uuid.UUID(done.stdout.strip().splitlines()[-1])

    messages = [entry.message for entry in read_run_logs(flow_run_id, expect="structlog_line")]
    assert sum("structlog_line" in m for m in messages) == 1
    assert sum(f"native line with {REDACTED}" in m for m in messages) == 1
    assert SECRET not in "\n".join(messages)
    assert SECRET not in done.stderr
