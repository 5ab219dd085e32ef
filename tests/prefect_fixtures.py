"""Session fixtures for tests that need a real Prefect server and workers.

``prefect_api``: ONE local Prefect server (API, UI, SQLite in a temp dir) for the whole
session, started by ``cutover.orchestration.server``. Its PREFECT_API_URL and PREFECT_HOME
are put in ``os.environ`` for the session, so Prefect clients in this process, the
``cutover`` CLI run as a subprocess and every worker talk to it; both are restored and the
server is stopped at the end.

``tests_worker``: the tiny test flow ``tests/flows_for_tests/sleepy.py`` deployed from
``tests/flows_for_tests/prefect.yaml`` (pool ``cutover-tests``) and a process worker for it.

``cutover_worker``: the project's ``prefect.yaml`` applied (pool ``cutover-local``) and a
process worker for it running with ``os.environ``, which holds the sandbox environment
(it asks for the ``sandbox`` fixture of ``tests/conftest.py``).

Import these into ``tests/conftest.py`` (``from tests.prefect_fixtures import *``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.orchestration.deployments import POOL, PROJECT_DIR, apply_deployments
from cutover.orchestration.server import PrefectServer, start_server, stop_server
from cutover.orchestration.worker import PrefectWorker, start_worker, stop_worker

TESTS_PREFECT_FILE = "tests/flows_for_tests/prefect.yaml"
TESTS_POOL = "cutover-tests"
SLEEPY_DEPLOYMENT = "sleepy/sleepy"

__all__ = ["SLEEPY_DEPLOYMENT", "TESTS_POOL", "cutover_worker", "prefect_api", "tests_worker"]


def _refresh_prefect_settings() -> None:
    """Make an already imported Prefect see the changed environment."""
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """The session's Prefect server; its address is in os.environ while the session runs."""
    home = tmp_path_factory.mktemp("prefect")
    server = start_server(home)
    saved = {name: os.environ.get(name) for name in server.client_environment()}
    os.environ.update(server.client_environment())
    _refresh_prefect_settings()
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _refresh_prefect_settings()
        stop_server(home)


@pytest.fixture(scope="session")
def tests_worker(prefect_api: PrefectServer) -> Iterator[PrefectWorker]:
    """A worker on pool ``cutover-tests`` with the ``sleepy/sleepy`` deployment applied."""
    apply_deployments(prefect_api.api_url, project_dir=PROJECT_DIR, prefect_file=TESTS_PREFECT_FILE, home=prefect_api.home)
    worker = start_worker(prefect_api.home, prefect_api.api_url, pool=TESTS_POOL, env=dict(os.environ), project_dir=PROJECT_DIR)
    try:
        yield worker
    finally:
        stop_worker(prefect_api.home, TESTS_POOL)


@pytest.fixture(scope="session")
def cutover_worker(prefect_api: PrefectServer, sandbox: object) -> Iterator[PrefectWorker]:
    """A worker on pool ``cutover-local`` with ``prefect.yaml`` applied; its flow runs see
    the sandbox environment (``sandbox`` has put it in os.environ)."""
    apply_deployments(prefect_api.api_url, project_dir=PROJECT_DIR, home=prefect_api.home)
    worker = start_worker(prefect_api.home, prefect_api.api_url, pool=POOL, env=dict(os.environ), project_dir=Path(PROJECT_DIR))
    try:
        yield worker
    finally:
        stop_worker(prefect_api.home, POOL)
