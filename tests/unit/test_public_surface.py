"""What a user may import from ``cutover`` is what its ``__all__`` names, and importing it
pulls in no Prefect (validate and plan stay fast). The deployment names the CLI runs come
from prefect.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cutover
from cutover.orchestration.deployments import deployment


def test_the_public_names_are_exactly_these_and_each_is_there():
    assert sorted(cutover.__all__) == sorted(
        [
            "CutoverError",
            "PermanentStepError",
            "Plan",
            "Problem",
            "Runbook",
            "RunbookError",
            "SandboxError",
            "Step",
            "StepError",
            "TransientStepError",
            "UnsafeChange",
            "__version__",
            "build_plan",
            "load_runbook",
        ]
    )
    for name in cutover.__all__:
        assert getattr(cutover, name) is not None
    plan = cutover.build_plan(cutover.load_runbook("runbooks/demo.yaml"))
    assert isinstance(plan, cutover.Plan) and all(isinstance(s, cutover.Step) for s in plan.steps.values())


def test_importing_cutover_imports_no_prefect():
    code = "import sys, cutover; cutover.build_plan(cutover.load_runbook('runbooks/demo.yaml')); print('prefect' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_package_says_it_is_typed():
    assert (Path(cutover.__file__).parent / "py.typed").exists()


def test_deployment_names_come_from_prefect_yaml():
    assert deployment("cutover") == "cutover/cutover"
    assert deployment("preflight") == "cutover-preflight/preflight"
    assert deployment("rollback") == "cutover-rollback/rollback"
