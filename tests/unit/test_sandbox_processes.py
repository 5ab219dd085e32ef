"""The sandbox's process handling: a recorded pid is signalled only while it is still our
program, whole process groups are stopped, and SIGTERM-deaf processes are killed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from cutover.sandbox import lifecycle, processes
from cutover.sandbox.info import AppInfo, PostgresInfo, PowerDnsInfo, SandboxInfo, SshInfo


def wait_for(predicate, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.fixture
def bystander():
    """A process that is not the sandbox's: it must outlive every test here."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


def test_stop_group_stops_the_process_and_every_child(tmp_path: Path):
    marker = str(tmp_path / "marker")
    pid = processes.start_detached(["sh", "-c", "sleep 120 & sleep 120 & wait", marker], tmp_path / "log")
    wait_for(lambda: len(processes.descendants(pid)) == 2)
    family = processes.descendants(pid) | {pid}
    processes.stop_group(pid, marker, "test")
    assert {p for p in family if processes.alive(p)} == set()


def test_stop_group_stops_a_child_that_left_the_process_group(tmp_path: Path):
    marker = str(tmp_path / "marker")
    pid = processes.start_detached(["sh", "-c", "setsid sleep 120 & wait", marker], tmp_path / "log")
    wait_for(lambda: len(processes.descendants(pid)) == 1)
    (child,) = processes.descendants(pid)
    wait_for(lambda: os.getpgid(child) != pid)
    started = time.monotonic()
    processes.stop_group(pid, marker, "test")
    assert not processes.alive(child)
    assert time.monotonic() - started < 5  # by SIGTERM, not by the SIGKILL after the timeout


def test_stop_group_kills_what_ignores_sigterm(tmp_path: Path):
    marker = str(tmp_path / "deaf")
    pid = processes.start_detached(["sh", "-c", "trap '' TERM; sleep 120; sleep 120", marker], tmp_path / "log")
    wait_for(lambda: len(processes.descendants(pid)) == 1)
    family = processes.descendants(pid) | {pid}
    started = time.monotonic()
    processes.stop_group(pid, marker, "test", timeout_s=0.5)
    assert {p for p in family if processes.alive(p)} == set()
    assert time.monotonic() - started < 5


def test_stop_group_leaves_a_pid_that_runs_another_program(bystander, tmp_path: Path):
    processes.stop_group(bystander.pid, str(tmp_path / "sandbox"), "test")
    assert processes.alive(bystander.pid)


def test_a_zombie_counts_as_gone():
    proc = subprocess.Popen(["true"])
    wait_for(lambda: not processes.alive(proc.pid))
    assert processes.cmdline(proc.pid) is None


def fake_sandbox(directory: Path, pid: int) -> SandboxInfo:
    """A recorded sandbox whose every pid is ``pid`` (which is not one of its processes)."""

    def pg(site: str) -> PostgresInfo:
        data = directory / "postgres" / site / "data"
        data.mkdir(parents=True)
        (data / "postmaster.pid").write_text(f"{pid}\n{data}\n")
        return PostgresInfo(
            site=site,
            host="127.0.0.1",
            port=1,
            user="migrate",
            password="pg-secret-1234",
            data_dir=str(data),
            socket_dir=str(data.parent / "socket"),
            bin_dir="/nonexistent",
            pid=pid,
        )

    apps = {
        "gis": AppInfo(
            name="gis",
            port=2,
            databases=["gis"],
            db_user="gis_app",
            db_password="app-secret-1234",
            old_url="http://127.0.0.2:2",
            new_url="http://127.0.0.3:2",
            hostname="gis.werkendam.test.",
        )
    }
    info = SandboxInfo(
        dir=str(directory),
        scale=1,
        onprem=pg("onprem"),
        cloud=pg("cloud"),
        ssh=SshInfo(
            host="127.0.0.1",
            port=3,
            user="root",
            private_key="KEY-secret-1234",
            private_key_file="/nonexistent",
            host_key="ssh-ed25519 AAAA",
            work_dir=str(directory),
            pg_bin_dir="/nonexistent",
            pid=pid,
        ),
        powerdns=PowerDnsInfo(
            api_url="http://127.0.0.1:4",
            api_key="api-secret-1234",
            server_id="localhost",
            dns_host="127.0.0.1",
            dns_port=5,
            zone="werkendam.test.",
            pid=pid,
        ),
        apps=apps,
        app_pids={"gis@onprem": pid, "gis@cloud": pid},
    )
    info.save()
    return info


def test_down_never_signals_a_recorded_pid_that_runs_another_program(bystander, tmp_path: Path):
    fake_sandbox(tmp_path, bystander.pid)
    assert lifecycle.down(tmp_path) == []
    assert processes.alive(bystander.pid)


def test_down_of_a_directory_without_a_sandbox_is_a_no_op(tmp_path: Path):
    assert lifecycle.down(tmp_path / "nothing-here") == []
