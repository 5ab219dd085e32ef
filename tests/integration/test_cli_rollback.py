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


def test_decide_says_when_there_is_no_such_run(prefect_api):
    run = str(uuid.uuid4())
    done = run_cli("decide", run, "--by", "anna", "--roll-forward", "--api", prefect_api.api_url)
    assert one_line_error(done, 1) == f"cutover decide: no flow run {run} at {prefect_api.api_url}"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "say what you decide: --gate NAME --go|--no-go, or --roll-forward, or --roll-back --acknowledge-writes-lost"),
        (("--go",), "answer a gate with both --gate NAME and --go or --no-go"),
        (("--gate", "go-no-go"), "answer a gate with both --gate NAME and --go or --no-go"),
        (("--gate", "go-no-go", "--go", "--roll-forward"), "a gate is answered with --go or --no-go"),
    ],
)
def test_decide_has_no_default_answer(args, says):
    done = run_cli("decide", str(uuid.uuid4()), "--by", "anna", *args, "--api", "http://127.0.0.1:9/api")
    assert says in one_line_error(done, 2)


def test_decide_needs_a_name(prefect_api):
    done = run_cli("decide", str(uuid.uuid4()), "--by", " ", "--roll-forward", "--api", prefect_api.api_url)
    assert "--by needs the name" in one_line_error(done, 2)


@pytest.mark.parametrize(
    ("run", "says"),
    [("not-a-run", "'not-a-run' is not a flow run id"), ("7d6c4c0e-0000-4000-8000-000000000000", "no flow run 7d6c4c0e")],
)
def test_rollback_names_a_run_that_is_not_there(prefect_api, run, says):
    done = run_cli("rollback", run, "--api", prefect_api.api_url)
    line = one_line_error(done, 1)
    assert line.startswith("cutover rollback: ") and says in line, line


def test_rollback_says_in_one_line_when_the_api_is_unreachable():
    env_api = "http://127.0.0.1:9/api"
    done = run_cli("rollback", str(uuid.uuid4()), "--api", env_api)
    assert one_line_error(done, 1) == f"cutover rollback: the Prefect API at {env_api} is not reachable (GET /health failed)"
