"""Steps at their site: a runbook with ``placement`` run from the deployment, the control
worker running the flow run, a step worker per site (each a process of its own with only
its site's secrets) running the steps placed there. The longer topology (a server on
PostgreSQL, a step worker killed mid-run) is the separate job ``bench/topology.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from cutover.orchestration.server import PrefectServer
from cutover.orchestration.step_worker import StepWorker, start_step_worker, stop_step_worker
from cutover.orchestration.worker import PrefectWorker
from cutover.postgres import fingerprint
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.sandbox.info import SandboxInfo
from cutover.sandbox.reset import reset

# About 75 s (two step workers and a cutover through them): over what the default suite may
# spend on it, so it runs on request: CUTOVER_TEST_SITE_WORKERS=1 (docs/topology.md).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.environ.get("CUTOVER_TEST_SITE_WORKERS"), reason="set CUTOVER_TEST_SITE_WORKERS=1 (about 75 s)"),
]

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEMO = PROJECT_DIR / "runbooks" / "demo.yaml"
# The secrets each site's worker gets (config/topology-one-machine.toml, for the sandbox).
SECRETS = {
    "onprem": ["CUTOVER_ONPREM_PG_PASSWORD", "CUTOVER_CLOUD_SSH_KEY", "CUTOVER_CLOUD_PG_PASSWORD", "CUTOVER_APP_GIS_DB_PASSWORD"],
    "cloud": ["CUTOVER_CLOUD_PG_PASSWORD", "CUTOVER_PDNS_API_KEY"],
}


def gis_only_runbook(tmp_path: Path) -> Path:
    """The demo runbook with only its gis application, the gate approving itself, and the
    default placement."""
    text = DEMO.read_text()
    head, apps = text.split("\napplications:\n", 1)
    gis = apps[apps.index("  - name: gis\n") : apps.index("  - name: belastingen\n")]
    head = head.replace("    applications: all\n", "    applications: all\n    auto_approve: true\n", 1)
    path = tmp_path / "gis-placed.yaml"
    path.write_text(head + "\napplications:\n" + gis + "\nplacement: {}\n")
    return path


def site_env(sandbox: SandboxInfo, site: str, storage: Path) -> dict[str, str]:
    every_secret = {name for names in SECRETS.values() for name in names} | {
        k for k in sandbox.environment() if k.endswith("_PASSWORD") or k.endswith("_API_KEY") or k.endswith("SSH_KEY")
    }
    env = {k: v for k, v in sandbox.environment().items() if k not in every_secret or k in SECRETS[site]}
    env["PREFECT_LOCAL_STORAGE_PATH"] = str(storage)
    return env


@pytest.fixture
def step_workers(prefect_api: PrefectServer, sandbox: SandboxInfo, tmp_path: Path) -> Iterator[dict[str, StepWorker]]:
    storage = prefect_api.home / "storage"  # where the flow runs of the session's server keep results
    workers: dict[str, StepWorker] = {}
    try:
        for site in SECRETS:
            workers[site] = start_step_worker(tmp_path, prefect_api.api_url, site, site_env(sandbox, site, storage), PROJECT_DIR)
        yield workers
    finally:
        for worker in workers.values():
            stop_step_worker(worker)


def endpoint(pg) -> PgEndpoint:  # type: ignore[no-untyped-def]
    return PgEndpoint(host=pg.host, port=pg.port, user=pg.user, password=pg.password, sslmode="disable")


def test_placed_steps_run_on_their_sites_worker_in_one_flow_run_named_by_step_id(
    sandbox: SandboxInfo, cutover_worker: PrefectWorker, step_workers: dict[str, StepWorker], tmp_path: Path
) -> None:
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
    from prefect.deployments import run_deployment

    from cutover.orchestration.api import prefect_client

    reset(sandbox)
    for site, worker in step_workers.items():
        environ = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if b"=" in e}
        other = {n for s, ns in SECRETS.items() if s != site for n in ns} - set(SECRETS[site])
        assert not names & other, f"the {site} worker must not hold {sorted(names & other)}"
    runbook = gis_only_runbook(tmp_path)
    flow_run = run_deployment("cutover/cutover", parameters={"runbook": str(runbook), "outside_window": True}, timeout=300)
    assert flow_run.state.is_completed(), flow_run.state.message

    with prefect_client(os.environ["PREFECT_API_URL"]) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[UUID(str(flow_run.id))])), limit=200
        )
    where = {r.name: next((t.removeprefix("site:") for t in r.tags if t.startswith("site:")), None) for r in runs}
    assert where["gis/freeze"] == "onprem"
    assert where["gis/stream/gis"] == "onprem"
    assert where["gis/source-check"] == "onprem"
    assert where["gis/verify/gis"] == "cloud"
    assert where["gis/smoke"] == "cloud"
    assert where["gis/dns"] == "cloud"
    assert where["gate/go-no-go"] is None and where["preflight"] is None, "gates and the preflight stay in the flow run"
    assert all(r.state is not None and r.state.is_completed() for r in runs), [(r.name, r.state) for r in runs]

    with connect(endpoint(sandbox.onprem), "gis", autocommit=True) as conn:
        before = fingerprint.fingerprint(conn)
    with connect(endpoint(sandbox.cloud), "gis", autocommit=True) as conn:
        after = fingerprint.fingerprint(conn)
    assert fingerprint.compare(before, after) == []
