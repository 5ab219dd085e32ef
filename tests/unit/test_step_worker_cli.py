"""``cutover step-worker``: what it refuses before it serves anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def step_worker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutover", "step-worker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=PROJECT,
        env=env,
    )


def test_a_site_the_runbook_does_not_have_is_one_located_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_HOME": str(tmp_path)}
    done = step_worker("--site", "onprme", "--runbook", "runbooks/demo.yaml", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cutover step-worker: runbooks/demo.yaml: sites: no site 'onprme' (the runbook has onprem, cloud)"
    ]


def test_without_a_prefect_api_it_refuses_rather_than_serve_a_private_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path)
    done = step_worker("--site", "onprem", env=env)
    assert done.returncode == 2
    assert "set PREFECT_API_URL" in done.stderr and "Traceback" not in done.stderr
