"""``cutover up``, ``status`` and ``down``: a server, the deployments, a worker and the
status page for your own runbook, started without the demo, its worker given the estate's environment from an
env file; checked by a preflight that resolves every secret on that worker. Bad input is
one line and exit 1."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cutover.orchestration.stack import read_env_file
from cutover.sandbox.info import SandboxInfo
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def env_file(path: Path, values: dict[str, str]) -> Path:
    lines = []
    for name, value in values.items():
        lines.append(f'{name}="{value}"' if "\n" in value else f"export {name}={value}")
    path.write_text("# the estate's variables\n" + "\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def test_up_starts_a_stack_whose_worker_has_the_env_file_and_down_stops_it(sandbox: SandboxInfo, tmp_path: Path):
    home = tmp_path / "home"
    estate_env = env_file(tmp_path / "estate.env", sandbox.environment())
    assert read_env_file(estate_env) == sandbox.environment(), "a private key spans lines in double quotes"
    try:
        up = run_cli("up", "--home", str(home), "--env-file", str(estate_env), timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "deployments: cutover-preflight/preflight, cutover-rollback/rollback, cutover/cutover" in up.stdout
        api = up.stdout.split("Prefect server ", 1)[1].split(" ", 1)[0]
        page = up.stdout.split("status page ", 1)[1].split(" ", 1)[0]
        assert httpx.get(page, timeout=10).status_code == 200, "the public view answers beside the UI"
        assert httpx.get(page + "team", timeout=10).status_code == 401, "the team view wants its token"
        token_file = home / "status-team-token"
        assert f"token in {token_file}" in up.stdout and (token_file.stat().st_mode & 0o777) == 0o600
        assert token_file.read_text().strip() not in up.stdout, "the token itself is never printed"
        with httpx.Client(follow_redirects=True, timeout=10) as browser:  # the token is swapped for a cookie
            assert browser.get(page + "team", params={"token": token_file.read_text().strip()}).status_code == 200

        status = run_cli("status", "--home", str(home))
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"server: {api} (pid " in status.stdout and "healthy" in status.stdout
        assert "worker: cutover-local-" in status.stdout and f"from {estate_env}" in status.stdout
        assert f"status page: {page}" in status.stdout
        assert "work directory: " in status.stdout and str(tmp_path) not in status.stdout.split("work directory: ")[1]

        # the worker resolves the runbook's secrets from the env file, not from this test's environment
        checked = run_cli("preflight", "runbooks/demo.yaml", "--api", api, timeout=300)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "secret reference(s) resolve in this worker's environment" in checked.stdout
    finally:
        down = run_cli("down", "--home", str(home))
    assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr
    after = run_cli("status", "--home", str(home))
    assert after.returncode == 1 and "server: not running" in after.stdout and "status page: not running" in after.stdout


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read the env file"),
        ("GOOD=1\nnot a line\n", ":2: not a NAME=value line"),
        ('KEY="never closed\n', ":1: the quoted value of KEY never ends"),
    ],
)
def test_up_refuses_a_bad_env_file_in_one_line(tmp_path: Path, content, says):
    path = tmp_path / "bad.env"
    if content is not None:
        path.write_text(content)
    done = run_cli("up", "--home", str(tmp_path / "home"), "--env-file", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cutover up: ") and says in lines[0], done.stderr
