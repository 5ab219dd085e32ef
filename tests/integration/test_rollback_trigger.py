"""The rollback deployment's trigger: a ``cutover.rollback.requested`` event starts a run of
``cutover-rollback/rollback`` for the flow run the event names (prefect.yaml)."""

from __future__ import annotations

import time
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.events import emit_event

pytestmark = pytest.mark.integration


def test_a_rollback_requested_event_starts_the_rollback_deployment_for_that_run(cutover_worker):
    unknown_run = str(uuid.uuid4())  # no such cutover run: the rollback must say so and stop
    emit_event(
        "cutover.rollback.requested",
        resource={"prefect.resource.id": f"cutover.run.{unknown_run}"},
        payload={"cutover_run": unknown_run, "runbook": "runbooks/demo.yaml"},
    )
    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while True:
            runs = [
                run
                for run in client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["rollback"])))
                if run.parameters.get("cutover_run") == unknown_run
            ]
            if runs and runs[0].state and runs[0].state.is_final():
                break
            assert time.monotonic() < deadline, f"no finished rollback run for the event (seen: {runs})"
            time.sleep(1)
    run = runs[0]
    assert run.parameters == {"cutover_run": unknown_run, "runbook": "runbooks/demo.yaml"}
    assert run.state.is_failed() and f"no cutover flow run '{unknown_run}'" in run.state.message
