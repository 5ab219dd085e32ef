"""Applying ``prefect.yaml``: the work pools it names, then its deployments.

``apply_deployments`` runs ``prefect --no-prompt deploy --all`` in the project directory
against a given API, after creating every process work pool the file names and that does
not exist yet. Applying again updates the deployments in place (same ids), so it is safe
to call on every ``cutover demo``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
import yaml

from cutover.orchestration import OrchestrationError
from cutover.orchestration.api import prefect_client

log = structlog.get_logger()

PROJECT_DIR = Path(__file__).resolve().parents[2]
PREFECT_FILE = "prefect.yaml"
POOL = "cutover-local"
POOL_TYPE = "process"
DEPLOY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class AppliedDeployments:
    """What ``apply_deployments`` did."""

    deployments: list[str]  # "flow-name/deployment-name", as run_deployment takes them
    pools_created: list[str]
    seconds: float


def declared_pools(prefect_file: Path) -> list[str]:
    """The work pool names the deployments in ``prefect_file`` use, in file order."""
    try:
        config = yaml.safe_load(prefect_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise OrchestrationError(f"cannot read {prefect_file}: {exc}") from exc
    pools: list[str] = []
    for deployment in config.get("deployments") or []:
        name = ((deployment or {}).get("work_pool") or {}).get("name")
        if name and name not in pools:
            pools.append(name)
    return pools


def declared_deployments(prefect_file: Path) -> list[str]:
    """The deployment names in ``prefect_file`` (without their flow names)."""
    config = yaml.safe_load(prefect_file.read_text()) or {}
    return [d["name"] for d in config.get("deployments") or [] if d and d.get("name")]


def ensure_work_pool(api_url: str, name: str = POOL, pool_type: str = POOL_TYPE) -> bool:
    """Create the work pool ``name`` unless it exists; True when it was created.
    An existing pool of another type is an OrchestrationError (its runs would not reach
    a process worker)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with prefect_client(api_url) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            except ObjectAlreadyExists:
                return False  # somebody else created it in the meantime: fine
            log.info("work_pool_created", pool=name, type=pool_type)
            return True
    if pool.type != pool_type:
        raise OrchestrationError(f"work pool {name} at {api_url} has type {pool.type}, not {pool_type}")
    return False


def deploy_environment(api_url: str, project_dir: Path, home: Path | None) -> dict[str, str]:
    """The environment ``prefect deploy`` runs with: the caller's without PREFECT_* (a
    profile must not redirect it), plus the API, the home and the project directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "CUTOVER_PROJECT_DIR": str(project_dir),
            "PREFECT_CLI_COLORS": "false",
            "PREFECT_CLI_WRAP_LINES": "false",
        }
    )
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    return env


def apply_deployments(
    api_url: str,
    project_dir: str | Path = PROJECT_DIR,
    prefect_file: str | Path = PREFECT_FILE,
    home: str | Path | None = None,
    timeout_s: float = DEPLOY_TIMEOUT_S,
) -> AppliedDeployments:
    """Create the work pools ``prefect_file`` names, then deploy every deployment in it
    (``prefect_file`` is relative to ``project_dir`` unless absolute; its entrypoints are
    relative to ``project_dir``). Returns the deployments' full names, read back from the
    API. Raises OrchestrationError with the last lines of Prefect's output on failure."""
    started = time.monotonic()
    project_dir = Path(project_dir).absolute()
    path = Path(prefect_file) if Path(prefect_file).is_absolute() else project_dir / prefect_file
    created = [pool for pool in declared_pools(path) if ensure_work_pool(api_url, pool)]
    argv = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(path)]
    try:
        done = subprocess.run(
            argv,
            cwd=project_dir,
            env=deploy_environment(api_url, project_dir, Path(home) if home else None),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise OrchestrationError(f"prefect deploy of {path} against {api_url} took longer than {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise OrchestrationError(f"prefect deploy of {path} against {api_url} failed (exit {done.returncode}): {tail}")
    names = _deployed_names(api_url, declared_deployments(path))
    seconds = round(time.monotonic() - started, 2)
    log.info("deployments_applied", deployments=names, pools_created=created, seconds=seconds)
    return AppliedDeployments(deployments=names, pools_created=created, seconds=seconds)


def _deployed_names(api_url: str, names: list[str]) -> list[str]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with prefect_client(api_url) as client:
        found = client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names)))
        flows = {d.flow_id: client.read_flow(d.flow_id).name for d in found}
    full = sorted(f"{flows[d.flow_id]}/{d.name}" for d in found)
    missing = set(names) - {d.name for d in found}
    if missing:
        raise OrchestrationError(f"prefect deploy reported success but {api_url} has no deployment {sorted(missing)}")
    return full


def _flow_name(entrypoint: str, project_dir: Path) -> str:
    """The ``@flow(name=...)`` of an entrypoint ``path.py:function``, read from its source
    (no import: the CLI stays quick and needs no flow's dependencies)."""
    import ast

    path, _, function = entrypoint.partition(":")
    tree = ast.parse((project_dir / path).read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "flow":
                    for keyword in decorator.keywords:
                        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                            return str(keyword.value.value)
            return function.replace("_", "-")  # Prefect's default flow name
    raise OrchestrationError(f"{entrypoint} in {project_dir / PREFECT_FILE} names no function {function}")


def deployment(name: str, project_dir: Path = PROJECT_DIR) -> str:
    """``flow/deployment`` of the deployment ``name`` of prefect.yaml (``cutover``,
    ``preflight``, ``rollback``), as run_deployment takes it: one home for these names."""
    config = yaml.safe_load((project_dir / PREFECT_FILE).read_text()) or {}
    for entry in config.get("deployments") or []:
        if entry and entry.get("name") == name:
            return f"{_flow_name(entry['entrypoint'], project_dir)}/{name}"
    raise OrchestrationError(f"{project_dir / PREFECT_FILE} has no deployment {name!r}")
