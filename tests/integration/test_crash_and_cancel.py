"""A cutover interrupted for real, through the ``cutover/cutover`` deployment and the
worker, on the sandbox: the flow-run process SIGKILLed in the middle of the upload and
in the middle of pg_restore, then the same flow run retried; the SSH connection cut in
the middle of the upload, which the transfer step's own retry resumes; a stream and a
table copy cancelled through the API (their programs are stopped at once), then rolled
back by the ``cutover-rollback/rollback`` deployment.

One application (gis) keeps each run short. Its source database gets a table of random
text for the module (about 125 MB of dump: gzip cannot shrink it), so that the upload,
the restore and the stream each last a few seconds and can be caught while they run. The
SSH "cloud host" is this machine, so the test watches the upload in the sandbox's work dir
and the remote pg_restore in /proc. The helpers here also serve test_retry_after_failure.py,
whose runs need no ballast.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import pytest
import yaml

from cutover.orchestration.api import prefect_client
from cutover.orchestration.follow import RunOutcome, follow_run, retry_run, start_run
from cutover.postgres import dump, fingerprint, freeze
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.runbook.loader import load_runbook
from cutover.sandbox.info import PostgresInfo, SandboxInfo
from cutover.sandbox.processes import alive, cmdline, descendants
from cutover.sandbox.reset import reset
from tests import faults

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEMO = PROJECT_DIR / "runbooks" / "demo.yaml"
CUTOVER = "werkendam-crash-tests"  # a name of its own: its work directories are this module's alone
APP = DB = "gis"
DEPLOYMENT = "cutover/cutover"
ROLLBACK_DEPLOYMENT = "cutover-rollback/rollback"
BALLAST = "cutover_test_ballast"
BALLAST_ROWS = 100  # of 1 MiB each: the upload and the restore take a few seconds
BIG_FILE = 50 * 1024 * 1024  # only the ballast's data file in the dump is this big
RUN_TIMEOUT_S = 600
GONE_TIMEOUT_S = 15  # the guardian and the remote watchdog act within about a second
# A bound, not a measurement: a cancelled run whose programs are not stopped leaves only
# when they finish, or when the worker SIGKILLs it 30 s after the request.
CANCELLED_WITHIN_S = 20
# One byte in 256 -> 85 printable characters that COPY writes as they are: about 6.4 bits
# of entropy per byte, so gzip keeps ~80% of it, and cheaply (hex bytea would double the
# text and make pg_dump's gzip three times slower for the same dump size).
_ALPHABET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~"
_TO_TEXT = bytes(_ALPHABET[b % len(_ALPHABET)] for b in range(256))

T = TypeVar("T")


# --- the runbook and the estate ----------------------------------------------------------


def runbook_variant(
    directory: Path, method: str, *, cutover: str = CUTOVER, edit: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """The demo runbook cut down to the gis application, moved by ``method``, with one
    quick retry per step and the gate approving itself; ``edit`` changes it further. The
    file's name depends on ``cutover`` and ``method`` only: writing the variant again
    without ``edit`` puts back what ``edit`` changed."""
    data = yaml.safe_load(DEMO.read_text())
    data["cutover"] = cutover
    data["window"] = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in data["window"].items()}
    data["defaults"].update(retries=1, retry_delay_s=1)
    data["gates"] = [{**gate, "auto_approve": True} for gate in data["gates"]]
    app = next(a for a in data["applications"] if a["name"] == APP)
    app.pop("depends_on", None)
    for db in app["databases"]:
        db["method"] = method
    data["applications"] = [app]
    if edit is not None:
        edit(data)
    path = directory / f"{cutover}-{method}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    load_runbook(path)  # a variant the loader refuses would fail every test below less clearly
    return path


def endpoint(pg: PostgresInfo) -> PgEndpoint:
    return PgEndpoint(host=pg.host, port=pg.port, user=pg.user, password=pg.password, sslmode="disable")


def local_work_root() -> Path:
    """Where the flow-run processes (cwd: the project, this test's environment) keep dumps."""
    from cutover.phases.workspace import work_root

    root = work_root()
    return root if root.is_absolute() else PROJECT_DIR / root


def remove_work_dirs(sandbox: SandboxInfo, cutover: str) -> None:
    """The local and remote work directories of every run of ``cutover``."""
    shutil.rmtree(local_work_root() / cutover, ignore_errors=True)
    shutil.rmtree(Path(sandbox.ssh.work_dir) / cutover, ignore_errors=True)


@pytest.fixture(scope="module")
def ballast(sandbox: SandboxInfo) -> Iterator[None]:
    """The big table in the source database for this module; dropped at the end, with the
    sandbox put back (source writable, old site live) and this module's dumps removed."""
    reset(sandbox)  # whatever ran before may have left the source read-only
    with connect(endpoint(sandbox.onprem), DB, autocommit=True) as conn:
        conn.execute(f"create table public.{BALLAST} (id int primary key, payload text)")
        conn.execute(f"alter table public.{BALLAST} alter payload set storage external")  # no TOAST compression
        with conn.cursor() as cur, cur.copy(f"copy public.{BALLAST} (id, payload) from stdin (format binary)") as copy:
            copy.set_types(["int4", "text"])
            for i in range(BALLAST_ROWS):
                copy.write_row((i, os.urandom(1 << 20).translate(_TO_TEXT).decode()))
    try:
        yield
    finally:
        reset(sandbox)
        with connect(endpoint(sandbox.onprem), DB, autocommit=True) as conn:
            conn.execute(f"drop table if exists public.{BALLAST}")
        remove_work_dirs(sandbox, CUTOVER)


@pytest.fixture
def estate(sandbox: SandboxInfo, ballast: None) -> SandboxInfo:
    reset(sandbox)
    return sandbox


# --- waiting and processes ----------------------------------------------------------------


def flow_run(api_url: str, flow_run_id: str) -> Any:
    with prefect_client(api_url) as client:
        return client.read_flow_run(UUID(flow_run_id))


def wait_during_run(
    api_url: str, flow_run_id: str, predicate: Callable[[], T | None], what: str, timeout_s: float = RUN_TIMEOUT_S
) -> T:
    """Poll ``predicate`` often until it returns something; fail at once when the run ends first."""
    deadline = time.monotonic() + timeout_s
    next_look = 0.0
    while True:
        value = predicate()
        if value:
            return value
        now = time.monotonic()
        if now >= next_look:
            state = flow_run(api_url, flow_run_id).state
            if state is not None and state.is_final():
                pytest.fail(f"the run ended ({state.name}: {state.message}) before {what}")
            next_look = now + 1.0
        if now >= deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def program_of(pid: int) -> str:
    line = cmdline(pid) or ""
    return line.split(" ", 1)[0].rsplit("/", 1)[-1]


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def postgres_clients(program: str, pg: PostgresInfo) -> list[int]:
    """Live ``program`` processes (pg_dump, pg_restore) pointed at ``pg`` through libpq's PGPORT."""
    return [
        pid for pid in all_pids() if program_of(pid) == program and environ_of(pid).get("PGPORT") == str(pg.port) and alive(pid)
    ]


def flow_run_process(api_url: str, worker_pid: int, flow_run_id: str) -> int:
    """The process running the flow: the one the worker recorded as the run's
    infrastructure, checked to be the worker's descendant working for this flow run."""
    pid = int(str(flow_run(api_url, flow_run_id).infrastructure_pid).rsplit(":", 1)[-1])
    assert pid in descendants(worker_pid), f"pid {pid} is not a process of the worker"
    assert environ_of(pid).get("PREFECT__FLOW_RUN_ID") == flow_run_id, f"pid {pid} does not run flow run {flow_run_id}"
    return pid


def leftovers(sandbox: SandboxInfo, flow_run_id: str) -> list[str]:
    """Processes that still work for the flow run: any local process of its, a pg_dump
    at the source, a pg_restore at the target, an SSH session on the cloud host."""
    found = []
    for pid in all_pids():
        env = environ_of(pid)
        if not env or not alive(pid):
            continue
        program = program_of(pid)
        if env.get("PREFECT__FLOW_RUN_ID") == flow_run_id:
            found.append(f"{pid} {program} (of the flow run)")
        elif program == "pg_dump" and env.get("PGPORT") == str(sandbox.onprem.port):
            found.append(f"{pid} pg_dump")
        elif program == "pg_restore" and env.get("PGPORT") == str(sandbox.cloud.port):
            found.append(f"{pid} pg_restore")
    assert sandbox.ssh.pid is not None
    found += [f"{pid} {program_of(pid)} (SSH session)" for pid in descendants(sandbox.ssh.pid)]
    return found


def assert_nothing_left(sandbox: SandboxInfo, flow_run_id: str) -> None:
    """Nothing of the flow run's (see :func:`leftovers`), nor any PostgreSQL client or
    shell wrapper working on the sandbox (faults.leftover_processes), still runs."""
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while left := leftovers(sandbox, flow_run_id):
        assert time.monotonic() < deadline, f"still running {GONE_TIMEOUT_S}s after the run ended: {left}"
        time.sleep(0.2)
    faults.assert_no_processes_left(sandbox, timeout_s=max(1.0, deadline - time.monotonic()))


# --- Prefect: runs, task runs, results --------------------------------------------------------


_STARTED: list[tuple[str, str]] = []  # (API URL, flow run id) of every run start() made


def start(api_url: str, runbook: Path) -> str:
    run_id = start_run(api_url, DEPLOYMENT, {"runbook": str(runbook), "outside_window": True})
    _STARTED.append((api_url, run_id))
    return run_id


@pytest.fixture(autouse=True)
def no_run_outlives_its_test() -> Iterator[None]:
    """A test that fails half-way leaves its run going; the next test would meet its
    target database (a red preflight). Cancel such a run and wait until it has ended."""
    from prefect.states import Cancelling

    mark = len(_STARTED)  # only this test's runs: other modules' tests call start() too
    yield
    while len(_STARTED) > mark:
        api_url, run_id = _STARTED.pop()
        state = flow_run(api_url, run_id).state
        if state is None or state.is_final():
            continue
        with prefect_client(api_url) as client:
            client.set_flow_run_state(UUID(run_id), Cancelling(message="its test ended"), force=True)
        wait_until(ended(api_url, run_id), 60, f"run {run_id} to end")


def ended(api_url: str, flow_run_id: str) -> Callable[[], bool]:
    def final() -> bool:
        state = flow_run(api_url, flow_run_id).state
        return state is not None and state.is_final()

    return final


def finish(api_url: str, flow_run_id: str, since: Any = None) -> RunOutcome:
    lines: list[str] = []
    outcome = follow_run(api_url, flow_run_id, out=lines.append, poll_s=0.5, timeout_s=RUN_TIMEOUT_S, since=since)
    assert outcome.final, f"flow run {flow_run_id} did not end: " + "\n".join(lines[-30:])
    return outcome


def task_runs_named(api_url: str, flow_run_id: str, name: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    with prefect_client(api_url) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name])),
        )


def step_states(api_url: str, flow_run_id: str, step: str, expected: list[str]) -> list[Any]:
    """The task runs of ``step``, once their state names (sorted) are ``expected``. Task
    run states reach the API through events, a little after the flow run ends."""

    def settled() -> list[Any] | None:
        runs = task_runs_named(api_url, flow_run_id, step)
        return runs if sorted(r.state.name for r in runs if r.state is not None) == expected else None

    deadline = time.monotonic() + 30
    while (runs := settled()) is None:
        if time.monotonic() >= deadline:
            seen = sorted(r.state.name for r in task_runs_named(api_url, flow_run_id, step) if r.state is not None)
            pytest.fail(f"{step}: task run states {seen}, expected {expected}")
        time.sleep(0.5)
    return runs


def fingerprints(sandbox: SandboxInfo) -> tuple[fingerprint.Fingerprint, fingerprint.Fingerprint]:
    """(source, target) fingerprints of the moved database."""
    with connect(endpoint(sandbox.onprem), DB, autocommit=True) as conn:
        source = fingerprint.fingerprint(conn)
    with connect(endpoint(sandbox.cloud), DB, autocommit=True) as conn:
        target = fingerprint.fingerprint(conn)
    return source, target


def fingerprints_equal(sandbox: SandboxInfo) -> list[str]:
    """The differences between source and target (none: the target verifies), ballast included."""
    source, target = fingerprints(sandbox)
    assert f"public.{BALLAST}" in source.tables, "the ballast is part of the move"
    return fingerprint.compare(source, target)


def ballast_copied_bytes(sandbox: SandboxInfo) -> int:
    """How far the COPY into the ballast table on the target has got (0 when not started)."""
    try:
        with connect(endpoint(sandbox.cloud), DB, autocommit=True) as conn:
            row = conn.execute(
                "select bytes_processed from pg_stat_progress_copy where datname = current_database() and relid = to_regclass(%s)",
                (f"public.{BALLAST}",),
            ).fetchone()
    except Exception:  # the target database is not there yet
        return 0
    return int(row[0]) if row else 0


def target_database(sandbox: SandboxInfo, name: str) -> tuple[int, str | None] | None:
    """(oid, comment) of database ``name`` on the target, or None."""
    with connect(endpoint(sandbox.cloud), "postgres", autocommit=True) as admin:
        row = admin.execute(
            "select oid, shobj_description(oid, 'pg_database') from pg_database where datname = %s", (name,)
        ).fetchone()
    return (int(row[0]), row[1]) if row else None


def wait_for_export(api_url: str, flow_run_id: str) -> None:
    """Wait until the run dumps the database into its local work directory: preflight and
    freeze are over (a slow link would fail the preflight's SSH login), the upload is next."""
    local_dump = local_work_root() / CUTOVER / flow_run_id / f"{APP}.{DB}.dump"
    wait_during_run(api_url, flow_run_id, local_dump.exists, "the export to begin")


def wait_for_big_upload(api_url: str, sandbox: SandboxInfo, flow_run_id: str) -> tuple[Path, Path, int]:
    """Wait until a fifth or more, but not all, of the big dump file is on the target (its
    ``.part`` file grows in the run's remote dump directory). Call it after
    :func:`wait_for_export`, under :func:`faults.slow_ssh`: on a fast machine the whole
    upload can otherwise pass between two looks. Returns that directory, the local big
    file and its size."""
    local_dump = local_work_root() / CUTOVER / flow_run_id / f"{APP}.{DB}.dump"
    remote_dump = Path(sandbox.ssh.work_dir) / CUTOVER / flow_run_id / f"{APP}.{DB}.dump"

    def partial(part: Path) -> bool:
        local = local_dump / part.name.removesuffix(".part")
        return part.name.endswith(".part") and local.exists() and part.stat().st_size < local.stat().st_size

    def big_upload_under_way() -> tuple[Path, int] | None:
        for part in remote_dump.glob("*.part"):
            local = local_dump / part.name.removesuffix(".part")
            try:
                total, sent = local.stat().st_size, part.stat().st_size
            except FileNotFoundError:
                continue
            if total >= BIG_FILE and total // 5 <= sent < total:
                return local, total
        finished = [p for p in remote_dump.glob("*.dat*") if p.stat().st_size >= BIG_FILE and not partial(p)]
        assert not finished, f"the upload of {finished[0].name} ended before the test caught it: make the ballast bigger"
        return None

    big_file, big_size = wait_during_run(api_url, flow_run_id, big_upload_under_way, "the big dump file to be partly uploaded")
    return remote_dump, big_file, big_size


def assert_resumed(transfer: Any, big_size: int, left_behind: int) -> None:
    """The completed transfer step sent only what was missing: the rest of the big file
    (and the files after it), not the part of it already on the target."""
    result = transfer.state.result()
    assert result.bytes >= big_size
    assert 0 < result.bytes_sent <= result.bytes - left_behind, (result, left_behind)


# --- the tests ------------------------------------------------------------------------


# The restore test comes first: the killed run keeps its slot of the per-host restore limit
# until the slot's lease runs out (Prefect's default, 300 s), and the tests after this
# module share that limit.
def test_sigkill_mid_restore_then_retry_restores_again(estate, cutover_worker, prefect_api, tmp_path):
    api = prefect_api.api_url
    run_id = start(api, runbook_variant(tmp_path, "file"))
    remote_dump = str(Path(estate.ssh.work_dir) / CUTOVER / run_id / f"{APP}.{DB}.dump")

    def restoring() -> list[int] | None:
        restores = [p for p in postgres_clients("pg_restore", estate.cloud) if remote_dump in (cmdline(p) or "")]
        return restores if restores and ballast_copied_bytes(estate) > 10 * 1024 * 1024 else None

    wait_during_run(api, run_id, restoring, "pg_restore to be copying the ballast on the target")
    os.kill(flow_run_process(api, cutover_worker.pid, run_id), signal.SIGKILL)

    crashed = finish(api, run_id)
    assert crashed.state_type == "CRASHED", crashed
    assert_nothing_left(estate, run_id)
    half = target_database(estate, DB)
    assert half is not None and half[1] == f"{dump.MARKER_PREFIX}{run_id}", f"a half-restored database of this run: {half}"

    outcome = finish(api, run_id, since=retry_run(api, run_id))

    assert outcome.ok, (outcome.state_name, outcome.message)
    step_states(api, run_id, f"{APP}/export/{DB}", ["Cached", "Completed"])
    step_states(api, run_id, f"{APP}/transfer/{DB}", ["Cached", "Completed"])
    imports = [r.state.name for r in task_runs_named(api, run_id, f"{APP}/import/{DB}")]
    assert "Completed" in imports and "Cached" not in imports, imports
    again = target_database(estate, DB)
    assert again is not None and again[0] != half[0], "the half-restored database was dropped and created again"
    assert again[1] == f"{dump.MARKER_PREFIX}{run_id}:imported"
    assert fingerprints_equal(estate) == []


def test_sigkill_mid_upload_then_retry_resumes_the_upload(estate, cutover_worker, prefect_api, tmp_path):
    api = prefect_api.api_url
    run_id = start(api, runbook_variant(tmp_path, "file"))
    wait_for_export(api, run_id)
    with faults.slow_ssh(estate):
        remote_dump, big_file, big_size = wait_for_big_upload(api, estate, run_id)
        os.kill(flow_run_process(api, cutover_worker.pid, run_id), signal.SIGKILL)

    crashed = finish(api, run_id)
    assert crashed.state_type == "CRASHED", crashed
    assert_nothing_left(estate, run_id)
    part = remote_dump / (big_file.name + ".part")
    assert part.exists() and not (remote_dump / big_file.name).exists(), "the killed upload left its partial file"
    left_behind = part.stat().st_size
    assert 0 < left_behind < big_size

    outcome = finish(api, run_id, since=retry_run(api, run_id))

    assert outcome.ok, (outcome.state_name, outcome.message)
    step_states(api, run_id, f"{APP}/export/{DB}", ["Cached", "Completed"])  # the retry did not dump again
    transfer = [r for r in task_runs_named(api, run_id, f"{APP}/transfer/{DB}") if r.state.is_completed()]
    assert len(transfer) == 1, [r.state.name for r in task_runs_named(api, run_id, f"{APP}/transfer/{DB}")]
    assert_resumed(transfer[0], big_size, left_behind)
    # uploaded in full (the transfer's result above), restored, verified: then removed from both hosts
    assert not part.exists() and not remote_dump.exists() and not big_file.exists()
    assert fingerprints_equal(estate) == []


def test_ssh_connection_cut_mid_upload_is_resumed_by_the_steps_retry(estate, cutover_worker, prefect_api, tmp_path):
    api = prefect_api.api_url
    run_id = start(api, runbook_variant(tmp_path, "file"))
    wait_for_export(api, run_id)
    with faults.slow_ssh(estate):
        remote_dump, big_file, big_size = wait_for_big_upload(api, estate, run_id)
        assert faults.kill_ssh_sessions(estate), "the upload's SSH connection was cut"
        part = remote_dump / (big_file.name + ".part")
        left_behind = part.stat().st_size  # the retry starts a second after the failure
    assert 0 < left_behind < big_size

    outcome = finish(api, run_id)  # no retry of the run, no operator

    assert outcome.ok, (outcome.state_name, outcome.message)
    assert flow_run(api, run_id).run_count == 1
    (transfer,) = step_states(api, run_id, f"{APP}/transfer/{DB}", ["Completed"])
    assert transfer.run_count == 2, "the transfer step failed once and its own retry finished the upload"
    assert_resumed(transfer, big_size, left_behind)
    # uploaded in full (the transfer's result above), restored, verified: then removed from both hosts
    assert not part.exists() and not remote_dump.exists() and not big_file.exists()
    assert fingerprints_equal(estate) == []
    assert_nothing_left(estate, run_id)


@pytest.mark.parametrize("method", ["stream", "copy"])
def test_cancel_mid_stream_then_rollback_on_request(estate, cutover_worker, prefect_api, tmp_path, method):
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    api = prefect_api.api_url
    runbook = runbook_variant(tmp_path, method)
    run_id = start(api, runbook)

    def streaming() -> bool:
        if method == "copy":  # the ballast, the largest table, goes first: its psql reader runs at the source
            return bool(postgres_clients("psql", estate.onprem)) and ballast_copied_bytes(estate) > 1024 * 1024
        return bool(
            postgres_clients("pg_dump", estate.onprem)
            and postgres_clients("pg_restore", estate.cloud)
            and ballast_copied_bytes(estate) > 10 * 1024 * 1024
        )

    wait_during_run(api, run_id, streaming, f"the {method} to be copying the ballast")
    asked = time.monotonic()
    with prefect_client(api) as client:  # what the UI's Cancel button does; the worker does the killing
        client.set_flow_run_state(UUID(run_id), Cancelling(message="cancelled by the test"), force=True)

    cancelled = finish(api, run_id)
    took = time.monotonic() - asked
    assert cancelled.state_type == "CANCELLED", cancelled
    # The flow stops the stream's pg_dump and pg_restore at once instead of waiting for
    # them (the worker would SIGKILL the run only 30 s after the request).
    assert took < CANCELLED_WITHIN_S, f"Cancelled {took:.0f}s after the request"
    stream = wait_until(
        lambda: [r for r in task_runs_named(api, run_id, f"{APP}/stream/{DB}") if r.state is not None and r.state.is_final()],
        30,
        "the stream step's final state",
    )
    assert not any(r.state.is_completed() for r in stream), [(r.state.name, r.state.message) for r in stream]
    half = target_database(estate, DB)
    assert half is not None and half[1] == f"{dump.MARKER_PREFIX}{run_id}", f"the stream did not finish: {half}"
    assert_nothing_left(estate, run_id)
    if method == "copy":  # the table cut off mid-COPY did not commit a part of itself
        with connect(endpoint(estate.cloud), DB, autocommit=True) as conn:
            assert conn.execute(f"select count(*) from public.{BALLAST}").fetchone() == (0,)

    rollback = run_deployment(
        ROLLBACK_DEPLOYMENT, parameters={"cutover_run": run_id, "runbook": str(runbook)}, timeout=RUN_TIMEOUT_S
    )

    assert rollback.state.is_completed(), rollback.state.message
    undone = rollback.state.result()
    assert undone["rolled_back"] and {f"{APP}/freeze", f"{APP}/stream/{DB}"} <= set(undone["undone"]), undone
    with connect(endpoint(estate.onprem), "postgres", autocommit=True) as admin:
        assert not freeze.is_read_only(admin, DB), "the source is writable again"
    app = estate.apps[APP]
    assert httpx.get(f"{app.old_url}/maintenance", timeout=10).json() == {"maintenance": False}, "the old site is live again"
    assert target_database(estate, DB) is None, "no database left under the target name"
    with connect(endpoint(estate.cloud), "postgres", autocommit=True) as admin:
        aside = [
            r[0] for r in admin.execute("select datname from pg_database where starts_with(datname, %s)", (f"{DB}_rolled_back_",))
        ]
    assert len(aside) == 1, f"the default on_rollback (rename) put the target's copy aside: {aside}"
