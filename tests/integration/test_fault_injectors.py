"""Each fault injector of tests/faults.py really breaks what it says, on the session's
sandbox, and puts it back; the estate invariants fail when the estate is not rolled back."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import paramiko
import psycopg
import pytest

from cutover.dns.powerdns import PowerDnsProvider
from cutover.dns.provider import RecordChange
from cutover.dns.query import query
from cutover.errors import PermanentStepError, TransientStepError
from cutover.postgres import fingerprint as fp
from cutover.postgres import freeze
from cutover.sandbox import postgres_cluster, processes
from cutover.sandbox.info import NEW_SITE_ADDRESS, OLD_SITE_ADDRESS, SandboxInfo
from cutover.sandbox.reset import reset
from cutover.ssh.remote import run_remote
from cutover.ssh.target import SshTarget, connect
from tests import faults

pytestmark = pytest.mark.integration

APP, DB = "gis", "gis"


@pytest.fixture
def estate(sandbox: SandboxInfo) -> Iterator[SandboxInfo]:
    reset(sandbox)
    yield sandbox
    reset(sandbox)


def pg_connect(pg, dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=pg.host,
        port=pg.port,
        user=pg.user,
        password=pg.password,
        dbname=dbname,
        autocommit=True,
        sslmode="disable",
        connect_timeout=5,
    )


def source_fingerprint(sandbox: SandboxInfo, db: str = DB) -> fp.Fingerprint:
    with pg_connect(sandbox.onprem, db) as conn:
        return fp.fingerprint(conn)


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout_s:g}s"
        time.sleep(0.1)


# --- applications --------------------------------------------------------------------------


def test_app_fault_answers_its_status_count_times_then_the_application_again(estate):
    url = estate.apps[APP].old_url
    with httpx.Client(timeout=10) as client:
        with faults.app_fault(estate, APP, "onprem", "/health", "GET", status=500, count=2):
            assert [client.get(f"{url}/health").status_code for _ in range(3)] == [500, 500, 200]
            assert client.post(f"{url}/health").status_code == 405, "only GET is faulted"
        with faults.app_fault(estate, APP, "onprem", "/maintenance", "POST", status=502):
            listed = client.get(f"{url}/fault").json()["faults"]
            assert listed == [{"path": "/maintenance", "method": "POST", "status": 502, "count": None}]
            assert [client.post(f"{url}/maintenance", json={"enabled": False}).status_code for _ in range(3)] == [502] * 3
            assert client.get(f"{url}/maintenance").json() == {"maintenance": False}
        assert client.get(f"{url}/fault").json() == {"faults": []}
        assert client.post(f"{url}/maintenance", json={"enabled": False}).status_code == 200


def test_reset_clears_every_fault_on_both_sites(estate):
    with httpx.Client(timeout=10) as client:
        for app in estate.apps.values():
            for url in (app.old_url, app.new_url):
                fault = {"path": "/maintenance", "method": "POST", "status": 500}
                assert client.post(f"{url}/fault", json=fault).status_code == 200
        reset(estate)  # must not be stopped by the faults on POST /maintenance either
        for app in estate.apps.values():
            for url in (app.old_url, app.new_url):
                assert client.get(f"{url}/fault").json() == {"faults": []}, url
        assert client.get(f"{estate.apps[APP].old_url}/health").status_code == 200


def test_the_fault_switch_refuses_bad_input_in_one_line(estate):
    url = estate.apps[APP].new_url
    with httpx.Client(timeout=10) as client:
        for body, words in [
            ({"path": "/fault", "method": "DELETE", "status": 500}, "cannot be faulted"),
            ({"path": "/health", "method": "GET", "status": 99}, "status"),
            ({"path": "/health", "method": "GET", "status": 500, "count": 0}, "count"),
            ({"path": "health", "method": "GET", "status": 500}, "path"),
            ({"path": "/health", "method": "GET", "status": 500, "times": 2}, "times"),
        ]:
            response = client.post(f"{url}/fault", json=body)
            assert response.status_code == 422 and words in response.json()["error"], (body, response.text)
            assert "\n" not in response.json()["error"]
        assert client.get(f"{url}/fault").json() == {"faults": []}


# --- PostgreSQL clusters ----------------------------------------------------------------------


def test_cluster_stopped_refuses_connections_inside_and_accepts_them_after(estate):
    pg = estate.onprem
    with faults.cluster_stopped(estate, "onprem"):
        assert postgres_cluster.postmaster_pid(pg) is None
        assert not faults.accepts_connections(pg)
    assert faults.accepts_connections(pg)
    recorded = SandboxInfo.load(estate.dir).onprem.pid
    assert recorded == postgres_cluster.postmaster_pid(pg) is not None, "the new postmaster is recorded for `down`"


def test_a_stopped_cluster_comes_back_by_itself_after_restart_after(estate):
    pg = estate.cloud
    stopped = faults.stop_cluster(estate, "cloud")
    assert not faults.accepts_connections(pg)
    stopped.restart_after(0.5)
    wait_until(lambda: faults.accepts_connections(pg), 30, "the cluster accepts connections again")
    stopped.wait()
    assert faults.accepts_connections(pg)


# --- SSH ------------------------------------------------------------------------------------------


def ssh_target(sandbox: SandboxInfo) -> SshTarget:
    ssh = sandbox.ssh
    return SshTarget(ssh.host, ssh.port, ssh.user, ssh.private_key, ssh.host_key)


def test_kill_ssh_sessions_breaks_an_open_connection_and_its_remote_command(estate):
    marker = f"fault-injector-{uuid.uuid4().hex[:8]}"
    client = connect(ssh_target(estate))
    try:
        sftp = client.open_sftp()
        assert sftp.listdir(estate.ssh.work_dir) is not None
        outcome: dict[str, Any] = {}

        def long_command() -> None:
            try:
                outcome["result"] = run_remote(client, f"sleep 60 # {marker}", timeout_s=120)
            except Exception as exc:
                outcome["error"] = exc

        runner = threading.Thread(target=long_command)
        runner.start()
        wait_until(
            lambda: any(marker in line for _, line in faults.leftover_processes(estate)),
            15,
            "the remote command shows up as ours",
        )
        killed = faults.kill_ssh_sessions(estate)
        assert killed and estate.ssh.pid not in killed
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            sftp.listdir(estate.ssh.work_dir)
        runner.join(30)
        assert not runner.is_alive() and isinstance(outcome.get("error"), TransientStepError), outcome
        # the remote watchdog ends the command once its sshd is gone: nothing left behind
        faults.assert_no_processes_left(estate)
    finally:
        client.close()
    assert processes.is_ours(estate.ssh.pid, estate.dir), "the listening daemon lives on"
    with connect(ssh_target(estate)) as again:
        assert run_remote(again, "true", timeout_s=30).exit_status == 0


def process_state(pid: int) -> str:
    """The one-letter state of ``pid`` from /proc (``T``: stopped), "" when it is gone."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_slow_ssh_stops_remote_commands_most_of_the_time_and_lets_them_all_run_after(estate):
    with connect(ssh_target(estate)) as client:
        outcome: dict[str, Any] = {}

        def count_a_stream() -> None:
            # about 2 s of work for one core; the pipe's ends are stopped and resumed
            outcome["result"] = run_remote(client, "head -c 4000000000 /dev/zero | wc -c", timeout_s=120)

        runner = threading.Thread(target=count_a_stream)
        runner.start()
        wait_until(lambda: len(faults._remote_commands(estate)) >= 3, 15, "the command's shell, head and wc show up")
        samples = []
        with faults.slow_ssh(estate, share=0.1):
            for _ in range(100):
                states = [process_state(pid) for pid in faults._remote_commands(estate)]
                samples.append(bool(states) and all(state == "T" for state in states))
                time.sleep(0.01)
            # logins are not slowed: a second connection is let in and runs its command
            with connect(ssh_target(estate)) as second:
                assert run_remote(second, "true", timeout_s=60).exit_status == 0
        stopped_share = sum(samples) / len(samples)
        assert stopped_share > 0.5, f"the remote commands were stopped {stopped_share:.0%} of the time, not about 90%"
        assert not any(process_state(pid) == "T" for pid in faults._remote_commands(estate)), "every command runs again"
        runner.join(120)
        # slow, not broken: the command ran to its end through its stops
        assert outcome["result"].stdout_tail.strip() == "4000000000", outcome


def test_leftover_processes_lists_only_programs_of_this_sandbox(estate, tmp_path):
    def start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env={"PATH": "/usr/bin:/bin", "PGPORT": str(port)}, start_new_session=True)

    ours = start(["sh", "-c", "sleep 60; true"], estate.cloud.port)
    script = tmp_path / "pg_dump"
    script.write_text("#!/bin/sh\nsleep 60\n")
    script.chmod(0o755)
    wrapper = start(["sh", str(script)], estate.onprem.port)
    stranger = start(["sh", "-c", "sleep 60; true"], 1)  # another cluster's client
    try:
        wait_until(
            lambda: {ours.pid, wrapper.pid} <= {pid for pid, _ in faults.leftover_processes(estate)},
            10,
            "both programs of ours are listed",
        )
        found = dict(faults.leftover_processes())  # from the session's environment
        assert ours.pid in found and wrapper.pid in found and stranger.pid not in found
    finally:
        for proc in (ours, wrapper, stranger):
            os.killpg(proc.pid, signal.SIGKILL)  # the shell and its sleep
            proc.wait()
    assert not {ours.pid, wrapper.pid} & {pid for pid, _ in faults.leftover_processes(estate)}


# --- PowerDNS -------------------------------------------------------------------------------------


def test_powerdns_stopped_takes_api_and_dns_down_and_brings_back_the_same_zone(estate):
    pdns = estate.powerdns
    api = f"{pdns.api_url}/api/v1/servers/{pdns.server_id}"
    zone = faults.zone_rrsets(estate)
    with faults.powerdns_stopped(estate):
        with pytest.raises(httpx.ConnectError):
            httpx.get(api, headers={"X-API-Key": pdns.api_key}, timeout=5)
        with pytest.raises(TransientStepError):
            query(estate.apps[APP].hostname, "A", server_host=pdns.dns_host, server_port=pdns.dns_port, timeout_s=0.5)
    assert httpx.get(api, headers={"X-API-Key": pdns.api_key}, timeout=5).status_code == 200
    answer = query(estate.apps[APP].hostname, "A", server_host=pdns.dns_host, server_port=pdns.dns_port)
    assert answer.values == (OLD_SITE_ADDRESS,)
    assert faults.zone_rrsets(estate) == zone
    recorded = SandboxInfo.load(estate.dir).powerdns.pid
    assert recorded == pdns.pid and processes.is_ours(recorded, f"--config-dir={estate.dir}/powerdns"), "recorded for `down`"


def test_powerdns_refuses_the_switch_of_one_name_with_422_which_is_a_permanent_error(estate):
    pdns = estate.powerdns
    name = estate.apps[APP].hostname
    zone = faults.zone_rrsets(estate)
    switch = RecordChange(name=name, rtype="A", ttl=60, values=(NEW_SITE_ADDRESS,), expect_current=(OLD_SITE_ADDRESS,))
    url = f"{pdns.api_url}/api/v1/servers/{pdns.server_id}/zones/{pdns.zone}"
    replace = {
        "rrsets": [
            {
                "name": name,
                "type": "A",
                "ttl": 60,
                "changetype": "REPLACE",
                "records": [{"content": NEW_SITE_ADDRESS, "disabled": False}],
            }
        ]
    }
    with faults.powerdns_refuses(estate, name):
        response = httpx.patch(url, headers={"X-API-Key": pdns.api_key}, json=replace, timeout=10)
        assert response.status_code == 422 and "Conflicts with pre-existing RRset" in response.text, response.text
        with PowerDnsProvider(pdns.api_url, pdns.api_key, pdns.zone) as provider:
            assert provider.get(name, "A").values == (OLD_SITE_ADDRESS,), "reading still works"
            with pytest.raises(PermanentStepError, match="refused with 422"):
                provider.apply(switch)
            other = estate.apps["portaal"].hostname  # only the one name is refused
            assert provider.apply(RecordChange(name=other, rtype="A", ttl=61, values=(OLD_SITE_ADDRESS,)))
        answer = query(name, "A", server_host=pdns.dns_host, server_port=pdns.dns_port)
        assert answer.values == (OLD_SITE_ADDRESS,), "resolvers still get the old value"
    reset(estate)  # the other name's TTL back to 60
    assert faults.zone_rrsets(estate) == zone, "the conflicting CNAME and its alias are gone"
    with PowerDnsProvider(pdns.api_url, pdns.api_key, pdns.zone) as provider:
        assert provider.apply(switch), "the switch is accepted again"


# --- writes where nobody may write ---------------------------------------------------------------


def test_write_on_source_changes_a_frozen_source_and_undo_puts_it_back(estate):
    before = source_fingerprint(estate)
    with pg_connect(estate.onprem) as admin:
        freeze.set_read_only(admin, DB)
        table = faults.write_on_source(estate, DB)
        assert freeze.is_read_only(admin, DB), "the freeze itself is untouched"
    assert table == "public.parcels"
    differences = fp.compare(before, source_fingerprint(estate))
    assert len(differences) == 1 and table in differences[0], differences
    with pg_connect(estate.onprem, DB) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("delete from public.parcels")  # an ordinary session still may not write
    assert faults.undo_row_writes(estate) == [f"onprem/{DB}/{table}"]
    assert fp.compare(before, source_fingerprint(estate)) == []


def test_change_target_row_changes_a_row_on_the_cloud_cluster(estate):
    target = f"faults_{uuid.uuid4().hex[:8]}"
    with pg_connect(estate.cloud) as admin:
        admin.execute(f"create database {target}")
    with pg_connect(estate.cloud, target) as conn:
        conn.execute("create table t (id int primary key, code char(3) unique, note text not null, n numeric)")
        conn.execute("insert into t select i, lpad(i::text, 3, '0'), 'row ' || i, i from generate_series(1, 5) i")
        first = fp.fingerprint(conn)
    assert faults.change_target_row(estate, target, table="public.t") == "public.t"
    with pg_connect(estate.cloud, target) as conn:
        assert conn.execute("select note, n from t where id = 1").fetchone() == ("row 1*", 1)
        assert fp.compare(first, fp.fingerprint(conn)) != []
    faults.undo_row_writes(estate)
    with pg_connect(estate.cloud, target) as conn:
        assert fp.compare(first, fp.fingerprint(conn)) == []


# --- files ------------------------------------------------------------------------------------------


def test_corrupt_file_flips_bytes_in_place(estate):
    path = estate.ssh.work_dir + f"/fault-{uuid.uuid4().hex[:8]}.dat"
    original = bytes(range(256)) * 400
    with open(path, "wb") as f:
        f.write(original)
    try:
        offsets = faults.corrupt_file(path)
        with open(path, "rb") as f:
            damaged = f.read()
    finally:
        os.unlink(path)
    assert len(damaged) == len(original) and hashlib.sha256(damaged).digest() != hashlib.sha256(original).digest()
    assert [i for i in range(len(original)) if damaged[i] != original[i]] == offsets and len(offsets) == 16


# --- the invariants -----------------------------------------------------------------------------------


def test_assert_rolled_back_passes_on_the_reset_estate_and_names_each_difference(estate):
    before = faults.estate_snapshot(estate, [APP])
    assert before == faults.estate_snapshot(estate, [APP])
    assert before.apps[APP].dns == (OLD_SITE_ADDRESS,) and not before.databases[DB].read_only
    faults.assert_rolled_back(estate, before)
    with pg_connect(estate.onprem) as admin:
        freeze.set_read_only(admin, DB)
    with pg_connect(estate.cloud) as admin:
        admin.execute(f"create database {DB}")
    httpx.post(f"{estate.apps[APP].old_url}/maintenance", json={"enabled": True}, timeout=5).raise_for_status()
    faults.write_on_source(estate, DB)
    with pytest.raises(AssertionError) as failed:
        faults.assert_rolled_back(estate, before)
    message = str(failed.value)
    for words in ("source gis is still read-only", "public.parcels", "maintenance", "target database(s) gis"):
        assert words in message, message
    with pytest.raises(AssertionError) as kept:
        faults.assert_rolled_back(estate, before, keep_targets=[DB])
    assert "target database" not in str(kept.value)
    faults.undo_row_writes(estate)
    reset(estate)
    faults.assert_rolled_back(estate, before)
