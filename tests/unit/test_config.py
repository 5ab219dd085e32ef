"""config/ is the one place for what Cutover reads besides the runbook: its files are read
by the code, and every environment variable the code reads is documented there."""

from __future__ import annotations

import re
from pathlib import Path

from cutover.config import library_log_levels, prefect_settings
from cutover.orchestration.server import server_environment
from cutover.orchestration.worker import worker_environment

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "config" / "README.md").read_text()


def test_the_local_server_and_worker_run_with_the_settings_of_config(tmp_path):
    server = server_environment(tmp_path, "127.0.0.1", 4200)
    assert prefect_settings("server") and all(server[k] == v for k, v in prefect_settings("server").items())
    worker = worker_environment("http://127.0.0.1:4200/api", tmp_path, {}, ROOT)
    assert prefect_settings("worker") and all(worker[k] == v for k, v in prefect_settings("worker").items())
    assert library_log_levels()["httpx"] == "WARNING"


def test_every_environment_variable_the_code_reads_is_documented():
    read = set()
    for path in [*ROOT.glob("cutover/**/*.py"), *ROOT.glob("flows/*.py"), *ROOT.glob("tasks/*.py")]:
        text = path.read_text()
        read |= set(re.findall(r"environ(?:\.get)?\(\s*[\"'](CUTOVER_[A-Z_]+)[\"']", text))
        read |= set(re.findall(r"environ\[\s*[\"'](CUTOVER_[A-Z_]+)[\"']\s*\]", text))
        read |= set(re.findall(r"^[A-Z_]+_VARIABLE = [\"'](CUTOVER_[A-Z_]+)[\"']", text, re.M))
    assert read, "the scan finds the variables"
    missing = sorted(name for name in read if f"`{name}`" not in README)
    assert not missing, f"config/README.md does not document {missing}"
