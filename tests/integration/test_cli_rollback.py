"""``cutover rollback`` and ``cutover decide`` on bad input: one line on stderr that says
what is wrong, a non-zero exit, no traceback. (Their good paths run in the fault tests
through the same API calls.)"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def one_line_error(done, code: int) -> str:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_decide_refuses_a_roll_back_without_the_acknowledgement_before_asking_the_server():
    done = run_cli("decide", str(uuid.uuid4()), "--by", "anna", "--roll-back", "--api", "http://127.0.0.1:9/api")
    assert "needs --acknowledge-writes-lost" in one_line_error(done, 2)


def test_decide_says_when_the_run_is_not_waiting_for_an_answer(prefect_api):
    run = str(uuid.uuid4())
    done = run_cli("decide", run, "--by", "anna", "--roll-forward", "--api", prefect_api.api_url)
    line = one_line_error(done, 1)
    assert line.startswith("cutover decide: could not answer the point-of-no-return question of flow run " + run), line


@pytest.mark.parametrize(
    ("run", "says"), [("not-a-run", "'not-a-run' is not a flow run id"), ("7d6c4c0e-0000-4000-8000-000000000000", "no flow run 7d6c4c0e")]
)
def test_rollback_names_a_run_that_is_not_there(prefect_api, run, says):
    done = run_cli("rollback", run, "--api", prefect_api.api_url)
    line = one_line_error(done, 1)
    assert line.startswith("cutover rollback: ") and says in line, line


def test_rollback_says_in_one_line_when_the_api_is_unreachable():
    env_api = "http://127.0.0.1:9/api"
    done = run_cli("rollback", str(uuid.uuid4()), "--api", env_api)
    assert one_line_error(done, 1) == f"cutover rollback: the Prefect API at {env_api} is not reachable (GET /health failed)"
