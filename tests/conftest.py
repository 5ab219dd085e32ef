"""Session fixtures shared by every test directory.

``sandbox``: one real sandbox estate per test session (scale 1), started through the CLI
(``cutover sandbox up``) in a temp dir the first time a test asks for it, and stopped with
``cutover sandbox down --purge`` at the end. Its ``environment()`` is in ``os.environ`` for
the session, so the demo runbook's ``env:`` references resolve.

Set ``CUTOVER_TEST_SANDBOX=/some/dir`` to run the tests against a sandbox in that dir
instead (started if needed, left running afterwards), which saves its start-up while
working on the tests.

The suite runs in two pytest-xdist workers, a test file at a time each (``-n 2 --dist
loadfile`` in pyproject.toml): most of a test's time is spent waiting on servers, not on
the two cores. Each worker is a session of its own: its own sandbox (free ports, its own
directory), Prefect server and state directory; nothing is shared between them.
``-n 0`` runs everything in one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.sandbox.info import SandboxInfo
from tests.prefect_fixtures import cutover_worker, prefect_api, tests_worker  # noqa: F401  (one Prefect server per session)

SESSION_SCALE = 1
_UP_SECONDS = pytest.StashKey[float]()


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``cutover <args>`` as a separate process, as a user would; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxInfo]:
    """The session's running sandbox (see the module docstring)."""
    reused = os.environ.get("CUTOVER_TEST_SANDBOX")
    if reused and os.environ.get("PYTEST_XDIST_WORKER"):
        reused = f"{reused}-{os.environ['PYTEST_XDIST_WORKER']}"  # one sandbox per worker
    directory = Path(reused) if reused else tmp_path_factory.mktemp("sandbox")
    started = time.monotonic()
    up = run_cli("sandbox", "up", "--scale", str(SESSION_SCALE), "--dir", str(directory))
    request.config.stash[_UP_SECONDS] = time.monotonic() - started
    if up.returncode != 0:
        if not reused:
            run_cli("sandbox", "down", "--purge", "--dir", str(directory))
        pytest.fail(f"cutover sandbox up failed (exit {up.returncode}): {up.stderr.strip()[-2000:]}", pytrace=False)
    info = SandboxInfo.load(directory)
    saved = dict(os.environ)
    os.environ.update(info.environment())
    try:
        yield info
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if not reused:
            down = run_cli("sandbox", "down", "--purge", "--dir", str(directory))
            if down.returncode != 0:
                pytest.fail(f"cutover sandbox down failed: {down.stderr.strip()[-2000:]}", pytrace=False)


@pytest.fixture(scope="session")
def sandbox_up_seconds(request: pytest.FixtureRequest, sandbox: SandboxInfo) -> float:
    """How long the session's ``cutover sandbox up`` took (wall clock, seconds)."""
    return request.config.stash[_UP_SECONDS]


def pytest_configure(config: pytest.Config) -> None:
    """The session's own state directory (cutover.state): the flows' work directories and a
    `cutover up` of the tests land in it, never in the user's, and go with the session."""
    # an xdist worker inherits the controller's environment: it makes a home of its own
    inherited = os.environ.get(_HOME_MADE_HERE) == os.environ.get("CUTOVER_HOME")
    if "CUTOVER_HOME" not in os.environ or (inherited and os.environ.get("PYTEST_XDIST_WORKER")):
        import tempfile

        os.environ["CUTOVER_HOME"] = os.environ[_HOME_MADE_HERE] = tempfile.mkdtemp(prefix="cutover-home-")
        config.stash[_OWN_HOME] = os.environ["CUTOVER_HOME"]


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_HOME, None)
    if own:
        import shutil

        shutil.rmtree(own, ignore_errors=True)
        os.environ.pop("CUTOVER_HOME", None)
        os.environ.pop(_HOME_MADE_HERE, None)


_OWN_HOME = pytest.StashKey[str]()
_HOME_MADE_HERE = "CUTOVER_TESTS_HOME"  # the CUTOVER_HOME a test session made (not the user's)
