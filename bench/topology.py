"""The test topology on one machine: a Prefect server on a sandbox PostgreSQL cluster, the
control worker, a step worker per site (each its own process and environment, with only
its site's secrets: config/topology-one-machine.toml), a cutover of the sandbox estate
through them with ``placement``, and the onprem step worker SIGKILLed while it runs a step
and started again. Passes when the run completes, every target database has the source's
fingerprint, some step was scheduled again after the kill, no task run of the run is left
Running, and no site worker's environment holds a secret of the other site.

A separate job, not in the default test suite (a cluster and a server on it cost about a
minute before the first step):

    .venv/bin/cutover sandbox up --dir .sandbox-topology      # once
    .venv/bin/python bench/topology.py --dir .sandbox-topology [--no-kill] [--json FILE]

Exit 0 when every check holds, 1 otherwise; prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import secrets
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import sandbox_tools

PROJECT = Path(__file__).resolve().parent.parent
TOPOLOGY = PROJECT / "config" / "topology-one-machine.toml"
DEPLOYMENT = "cutover/cutover"


@dataclass
class Topology:
    api_url: str
    home: Path
    runbook: Path
    storage: Path
    workers: dict[str, int] = field(default_factory=dict)  # site -> pid of its step worker
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # site -> its environment
    step_limit: int | None = None  # steps a step worker runs at once (None: its default)


def read_topology() -> dict[str, Any]:
    with open(TOPOLOGY, "rb") as f:
        return tomllib.load(f)


def site_environment(config: dict[str, Any], sandbox_env: dict[str, str], site: str) -> dict[str, str]:
    """The sandbox's variables a site's worker gets: every plain one, and of the secrets
    only those its site lists."""
    secret = config["secrets"]["names"]
    allowed = config["sites"][site]["secrets"]

    def is_secret(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in secret)

    def is_allowed(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed)

    return {k: v for k, v in sandbox_env.items() if not is_secret(k) or is_allowed(k)}


def placed_runbook(directory: Path) -> Path:
    """The demo runbook, gate approving itself, with the default placement."""
    text = (PROJECT / "runbooks" / "demo.yaml").read_text()
    text = text.replace("    applications: all\n", "    applications: all\n    auto_approve: true\n", 1)
    text += "\nplacement: {}\n"
    path = directory / "demo-placed.yaml"
    path.write_text(text)
    return path


@contextmanager
def prefect_cluster(info: Any, root: Path) -> Iterator[str]:
    """A third sandbox cluster, ``prefect``, with a database ``prefect``; yields the server's
    database URL (postgresql+asyncpg)."""
    import psycopg

    from cutover.sandbox import postgres_cluster
    from cutover.sandbox.info import PostgresInfo
    from cutover.sandbox.ports import PortPicker

    record = root / "prefect-cluster.json"
    if record.exists():
        pg = PostgresInfo(**json.loads(record.read_text()))
    else:
        data, sockets, _log = postgres_cluster.layout(postgres_cluster.clusters_root(Path(info.dir)), "prefect")
        pg = PostgresInfo(
            site="prefect",
            host="127.0.0.1",
            port=PortPicker().pick(),
            user="prefect",
            password=secrets.token_urlsafe(18),
            data_dir=str(data),
            socket_dir=str(sockets),
            bin_dir=postgres_cluster.find_bin_dir(),
        )
        record.write_text(json.dumps(pg.__dict__))
        record.chmod(0o600)
    postgres_cluster.create(pg)
    postgres_cluster.start(pg)
    dsn = f"host={pg.host} port={pg.port} user={pg.user} password={pg.password} dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        # a fresh database each time: a test topology starts with no runs of an earlier one
        conn.execute("drop database if exists prefect with (force)")
        conn.execute("create database prefect")
    try:
        yield f"postgresql+asyncpg://{pg.user}:{pg.password}@{pg.host}:{pg.port}/prefect"
    finally:
        postgres_cluster.stop(pg)


def prefect_cluster_pid(root: Path) -> int:
    """The postmaster of the ``prefect`` cluster recorded under ``root`` (0 when none runs)."""
    from cutover.sandbox import postgres_cluster
    from cutover.sandbox.info import PostgresInfo

    pg = PostgresInfo(**json.loads((root / "prefect-cluster.json").read_text()))
    return postgres_cluster.postmaster_pid(pg) or 0


def start_step_worker(top: Topology, site: str, env: dict[str, str]) -> int:
    from cutover.orchestration.step_worker import start_step_worker as start

    # the result storage the flow run uses too (its settings travel with each step, but the
    # worker reads a step's parameters with its own)
    full = {**env, "PREFECT_LOCAL_STORAGE_PATH": str(top.storage)}
    worker = start(top.home.parent, top.api_url, site, full, PROJECT, runbook=top.runbook, limit=top.step_limit)
    top.workers[site] = worker.pid
    top.env[site] = full
    return worker.pid


def task_runs(api_url: str, flow_run_id: str) -> list[Any]:
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    from cutover.orchestration.api import prefect_client

    found: list[Any] = []
    with prefect_client(api_url) as client:
        while True:
            page = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[UUID(flow_run_id)])),
                limit=200,
                offset=len(found),
            )
            found += page
            if len(page) < 200:
                return found


def kill_when_running(top: Topology, flow_run_id: str, site: str, phases: tuple[str, ...], out: dict[str, Any]) -> None:
    """SIGKILL the step worker of ``site`` (its process group) as soon as one of its steps of
    ``phases`` is Running; start it again 3 s later."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for run in task_runs(top.api_url, flow_run_id):
            parts = run.name.split("/")
            if run.state and run.state.type.value == "RUNNING" and len(parts) > 1 and parts[1] in phases:
                pid = top.workers[site]
                os.killpg(pid, signal.SIGKILL)
                out["killed"] = {"step": run.name, "pid": pid, "at": time.time()}
                time.sleep(3)
                start_step_worker(top, site, dict(top.env[site]))
                out["restarted_pid"] = top.workers[site]
                return
        time.sleep(0.2)


def secrets_separated(top: Topology, config: dict[str, Any], sandbox_env: dict[str, str]) -> dict[str, list[str]]:
    """Per site: the secrets of the sandbox in its worker's environment (read from /proc)."""
    names = config["secrets"]["names"]
    found: dict[str, list[str]] = {}
    for site, pid in top.workers.items():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        keys = {e.split(b"=", 1)[0].decode() for e in environ if b"=" in e}
        found[site] = sorted(k for k in keys if k in sandbox_env and any(fnmatch.fnmatchcase(k, p) for p in names))
    return found


@contextmanager
def production_topology(
    info: Any, root: Path, runbook: Path, figures: dict[str, Any], step_limit: int | None = None
) -> Iterator[Topology]:
    """The server on the ``prefect`` cluster, the deployments, the control worker (every
    secret: the preflight) and a step worker per site (its own secrets only), for the
    ``with`` block; everything started is stopped after."""
    from cutover.orchestration import owned_process
    from cutover.orchestration.deployments import apply_deployments
    from cutover.orchestration.server import start_server, stop_server
    from cutover.orchestration.worker import start_worker, stop_worker

    config = read_topology()
    sandbox_env = info.environment()
    started = time.monotonic()
    with prefect_cluster(info, root) as database_url:
        home = root / "prefect"
        top = Topology(api_url="", home=home, runbook=runbook, storage=home / "storage", step_limit=step_limit)
        try:
            server = start_server(home, database_url=database_url)
            top.api_url = server.api_url
            figures["server_start_s"] = round(time.monotonic() - started, 1)
            apply_deployments(server.api_url, project_dir=PROJECT, home=server.home)
            control_env = {**sandbox_env, "CUTOVER_WORK_DIR": str(root / "work-control")}
            start_worker(server.home, server.api_url, env=control_env, project_dir=PROJECT)
            sites = list(config["sites"])
            for site in sites:
                start_step_worker(top, site, site_environment(config, sandbox_env, site))
            figures["secrets_in_worker_env"] = secrets_separated(top, config, sandbox_env)
            figures["setup_s"] = round(time.monotonic() - started, 1)
            yield top
        finally:
            for site, pid in top.workers.items():
                owned_process.stop(pid, f"step-worker:{site}:{top.home.parent}", f"step worker {site}")
            stop_worker(home)
            stop_server(home)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".sandbox-topology")
    parser.add_argument("--no-kill", action="store_true", help="run through the topology without killing a worker")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()

    from cutover.orchestration.api import prefect_client
    from cutover.orchestration.follow import follow_run, start_run
    from cutover.postgres import fingerprint
    from cutover.postgres.endpoint import connect
    from cutover.sandbox.reset import reset
    from tasks.site_steps import RESCHEDULED

    info = sandbox_tools.load(args.dir)
    root = Path(info.dir).absolute() / "topology"
    root.mkdir(exist_ok=True)
    reset(info)
    figures: dict[str, Any] = {"topology": str(TOPOLOGY.relative_to(PROJECT))}
    started = time.monotonic()
    with production_topology(info, root, placed_runbook(root), figures) as top:
        t1 = time.monotonic()
        run_id = start_run(top.api_url, DEPLOYMENT, {"runbook": str(top.runbook), "outside_window": True})
        kill: dict[str, Any] = {}
        killer = None
        if not args.no_kill:
            killer = threading.Thread(
                target=kill_when_running,
                args=(top, run_id, "onprem", ("stream", "export", "transfer", "import"), kill),
                daemon=True,
            )
            killer.start()
        outcome = follow_run(top.api_url, run_id, out=lambda _line: None, timeout_s=900)
        figures["run_s"] = round(time.monotonic() - t1, 1)
        if killer is not None:
            killer.join(timeout=5)
        figures["state"] = outcome.state_name
        figures["message"] = (outcome.message or "")[:300]
        figures["kill"] = kill

        time.sleep(2)  # the last task states reach the API as events
        runs = task_runs(top.api_url, run_id)
        figures["task_runs"] = len(runs)
        figures["left_running"] = sorted(r.name for r in runs if r.state and not r.state.is_final())
        rescheduled = []
        with prefect_client(top.api_url) as client:
            for r in runs:
                if any((s.message or "").startswith(RESCHEDULED) for s in client.read_task_run_states(r.id)):
                    rescheduled.append(r.name)
        figures["rescheduled"] = sorted(rescheduled)
        by_site: dict[str, int] = {}
        for r in runs:
            site = next((t.split(":", 1)[1] for t in r.tags if t.startswith("site:")), "flow")
            by_site[site] = by_site.get(site, 0) + 1
        figures["task_runs_by_site"] = by_site

    verified = {}
    source, target = sandbox_tools.pg_endpoint(info.onprem), sandbox_tools.pg_endpoint(info.cloud)
    for app in info.apps.values():
        for db in app.databases:
            with connect(source, db, autocommit=True) as conn:
                before = fingerprint.fingerprint(conn)
            with connect(target, db, autocommit=True) as conn:
                after = fingerprint.fingerprint(conn)
            verified[db] = fingerprint.compare(before, after) == []
    figures["targets_verified"] = verified
    other = {"onprem": ["CUTOVER_PDNS_API_KEY"], "cloud": ["CUTOVER_ONPREM_PG_PASSWORD", "CUTOVER_CLOUD_SSH_KEY"]}
    checks = {
        "run_completed": figures.get("state") == "Completed",
        "targets_verified": bool(figures.get("targets_verified")) and all(figures["targets_verified"].values()),
        "none_left_running": figures.get("left_running") == [],
        "killed_and_rescheduled": args.no_kill or (bool(figures.get("kill")) and bool(figures.get("rescheduled"))),
        "secrets_separated": all(
            not set(other.get(site, [])) & set(names) for site, names in figures.get("secrets_in_worker_env", {}).items()
        ),
    }
    figures["checks"] = checks
    figures["total_s"] = round(time.monotonic() - started, 1)
    line = json.dumps(figures, sort_keys=True)
    print(line)
    if args.json:
        args.json.write_text(line + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
