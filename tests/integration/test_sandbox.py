"""The sandbox estate is real: every service answers on its recorded address, the old
site's estate holds what real estates hold, and ``down`` leaves no process behind."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import paramiko
import psycopg
import pytest
from psycopg import sql

from cutover.sandbox import estate, processes
from cutover.sandbox.info import ESTATE, OLD_SITE_ADDRESS, SandboxInfo
from cutover.sandbox.reset import reset
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def pg_connect(pg, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
    kwargs.setdefault("user", pg.user)
    kwargs.setdefault("password", pg.password)
    kwargs.setdefault("autocommit", True)
    return psycopg.connect(host=pg.host, port=pg.port, dbname=dbname, sslmode="disable", connect_timeout=10, **kwargs)


# --- start-up, status, idempotence -------------------------------------------------------


def test_up_at_scale_1_brings_every_service_up_within_a_minute(sandbox: SandboxInfo, sandbox_up_seconds: float):
    assert sandbox_up_seconds < 60, f"cutover sandbox up --scale 1 took {sandbox_up_seconds:.1f}s"
    result = run_cli("sandbox", "status", "--dir", sandbox.dir)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line.split() for line in result.stdout.strip().splitlines()]
    expected = {"postgres@onprem", "postgres@cloud", "sshd", "powerdns"} | {
        f"{app}@{site}" for app in ESTATE for site in ("onprem", "cloud")
    }
    assert {line[0] for line in lines} == expected
    assert all(line[1] == "up" for line in lines), result.stdout


def test_second_up_reuses_the_running_services(sandbox: SandboxInfo):
    before = json.loads((Path(sandbox.dir) / "sandbox.json").read_text())
    result = run_cli("sandbox", "up", "--dir", sandbox.dir)
    assert result.returncode == 0, result.stderr
    after = json.loads((Path(sandbox.dir) / "sandbox.json").read_text())
    assert after == before  # same pids, ports and secrets: nothing was restarted or regenerated


def test_up_restarts_only_the_service_that_stopped(sandbox: SandboxInfo):
    from cutover.sandbox import postgres_cluster

    postgres_cluster.stop(sandbox.cloud)  # a real fault: the cloud cluster goes away
    status = run_cli("sandbox", "status", "--dir", sandbox.dir)
    assert status.returncode == 1
    assert [line.split()[1] for line in status.stdout.splitlines() if line.startswith("postgres@cloud")] == ["DOWN"]
    before = SandboxInfo.load(sandbox.dir)
    result = run_cli("sandbox", "up", "--dir", sandbox.dir)
    assert result.returncode == 0, result.stderr
    after = SandboxInfo.load(sandbox.dir)
    assert after.cloud.pid != before.cloud.pid and processes.alive(after.cloud.pid)
    assert (after.onprem.pid, after.ssh.pid, after.powerdns.pid, after.app_pids) == (
        before.onprem.pid,
        before.ssh.pid,
        before.powerdns.pid,
        before.app_pids,
    )
    sandbox.cloud.pid = after.cloud.pid
    with pg_connect(sandbox.cloud) as conn:
        assert conn.execute("select current_setting('cluster_name')").fetchone() == ("cloud",)


def test_up_with_another_scale_than_the_recorded_one_is_refused(sandbox: SandboxInfo):
    result = run_cli("sandbox", "up", "--scale", str(sandbox.scale + 1), "--dir", sandbox.dir)
    assert result.returncode == 1
    assert f"built at scale {sandbox.scale}" in result.stderr and "Traceback" not in result.stderr


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["onprem", "cloud"])
def test_each_cluster_answers_as_its_site_with_scram_password_auth(sandbox: SandboxInfo, site: str):
    pg = getattr(sandbox, site)
    with pg_connect(pg) as conn:
        name, superuser = conn.execute(
            "select current_setting('cluster_name'), rolsuper from pg_roles where rolname = current_user"
        ).fetchone()
        methods = {r[0] for r in conn.execute("select auth_method from pg_hba_file_rules")}
        address = conn.execute("select host(inet_server_addr())").fetchone()[0]
    assert (name, superuser, address) == (site, True, "127.0.0.1")
    assert methods == {"scram-sha-256"}
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_connect(pg, password="wrong-" + secrets.token_hex(4))


# --- OpenSSH ------------------------------------------------------------------------------


def ssh_client(sandbox: SandboxInfo, host_key_line: str) -> paramiko.SSHClient:
    key_type, blob = host_key_line.split()[:2]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.get_host_keys().add(
        f"[{sandbox.ssh.host}]:{sandbox.ssh.port}", key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(blob))
    )
    try:
        client.connect(
            sandbox.ssh.host,
            port=sandbox.ssh.port,
            username=sandbox.ssh.user,
            pkey=paramiko.Ed25519Key.from_private_key_file(sandbox.ssh.private_key_file),
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )
    except BaseException:
        client.close()
        raise
    return client


def test_ssh_command_and_sftp_upload_with_the_pinned_host_key(sandbox: SandboxInfo, tmp_path: Path):
    payload = os.urandom(300_000)
    local = tmp_path / "dump.bin"
    local.write_bytes(payload)
    remote = f"{sandbox.ssh.work_dir}/upload-{secrets.token_hex(6)}.bin"
    client = ssh_client(sandbox, sandbox.ssh.host_key)
    try:
        with client.open_sftp() as sftp:
            sftp.put(str(local), remote)
            assert sftp.stat(remote).st_size == len(payload)
        _, stdout, _ = client.exec_command(f"sha256sum {remote} && {sandbox.ssh.pg_bin_dir}/pg_restore --version && rm {remote}")
        output = stdout.read().decode()
        assert stdout.channel.recv_exit_status() == 0, output
    finally:
        client.close()
    assert output.split()[0] == hashlib.sha256(payload).hexdigest()
    assert "pg_restore (PostgreSQL)" in output


def test_ssh_refuses_a_host_whose_key_is_not_the_pinned_one(sandbox: SandboxInfo):
    # Any other ed25519 key will do as the wrong pin: the client key's public half.
    wrong = (Path(sandbox.ssh.private_key_file).with_suffix(".pub")).read_text()
    assert wrong.split()[1] != sandbox.ssh.host_key.split()[1]
    with pytest.raises(paramiko.BadHostKeyException):
        ssh_client(sandbox, wrong)


# --- PowerDNS -----------------------------------------------------------------------------


def dns_a_query(name: str, host: str, port: int) -> tuple[int, list[tuple[str, int]]]:
    """(rcode, [(address, ttl)]) of an A query for ``name``, sent over UDP."""
    query_id = secrets.randbits(16)
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", query_id, 0, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(packet, (host, port))
        reply, _ = sock.recvfrom(4096)
    rid, flags, qdcount, ancount = struct.unpack(">HHHH", reply[:8])
    assert rid == query_id and flags & 0x8000, "not a reply to our query"

    def skip_name(at: int) -> int:
        while True:
            length = reply[at]
            if length & 0xC0 == 0xC0:
                return at + 2
            if length == 0:
                return at + 1
            at += 1 + length

    at = 12
    for _ in range(qdcount):
        at = skip_name(at) + 4
    answers = []
    for _ in range(ancount):
        at = skip_name(at)
        rtype, _, ttl, length = struct.unpack(">HHIH", reply[at : at + 10])
        at += 10
        if rtype == 1:
            answers.append((socket.inet_ntoa(reply[at : at + length]), ttl))
        at += length
    return flags & 0xF, answers


def test_powerdns_api_change_is_answered_by_the_dns_server(sandbox: SandboxInfo):
    pdns = sandbox.powerdns
    name = f"probe-{secrets.token_hex(4)}.{pdns.zone}"
    zone_url = f"{pdns.api_url}/api/v1/servers/{pdns.server_id}/zones/{pdns.zone}"

    def put(address: str | None) -> None:
        rrset = {"name": name, "type": "A", "ttl": 60, "changetype": "DELETE" if address is None else "REPLACE"}
        if address:
            rrset["records"] = [{"content": address, "disabled": False}]
        response = httpx.patch(zone_url, headers={"X-API-Key": pdns.api_key}, json={"rrsets": [rrset]}, timeout=10)
        assert response.status_code == 204, response.text

    assert dns_a_query(name, pdns.dns_host, pdns.dns_port) == (3, [])  # NXDOMAIN
    try:
        put("192.0.2.10")
        assert dns_a_query(name, pdns.dns_host, pdns.dns_port) == (0, [("192.0.2.10", 60)])
        put("192.0.2.20")
        assert dns_a_query(name, pdns.dns_host, pdns.dns_port) == (0, [("192.0.2.20", 60)])
    finally:
        put(None)
    assert httpx.get(zone_url, headers={"X-API-Key": "wrong"}, timeout=10).status_code == 401


def test_every_application_has_an_a_record_with_ttl_60(sandbox: SandboxInfo):
    reset(sandbox)
    for app in sandbox.apps.values():
        rcode, answers = dns_a_query(app.hostname, sandbox.powerdns.dns_host, sandbox.powerdns.dns_port)
        assert (rcode, answers) == (0, [(OLD_SITE_ADDRESS, 60)]), app.hostname


# --- the applications ---------------------------------------------------------------------


def test_old_site_health_answers_from_its_database_and_maintenance_switches_it_off(sandbox: SandboxInfo):
    reset(sandbox)
    with httpx.Client(timeout=10) as client:
        for app in sandbox.apps.values():
            database = app.databases[0]
            main_table = estate.MAIN_TABLE[database]
            health = client.get(f"{app.old_url}/health")
            assert health.status_code == 200, health.text
            assert health.json() == {
                "status": "ok",
                "app": app.name,
                "site": "onprem",
                "database": database,
                "cluster": "onprem",
                "rows": estate.row_counts(database, sandbox.scale)[main_table],
            }
            assert client.post(f"{app.old_url}/maintenance", json={"enabled": True}).json() == {"maintenance": True}
            assert client.get(f"{app.old_url}/maintenance").json() == {"maintenance": True}
            down = client.get(f"{app.old_url}/health")
            assert (down.status_code, down.json()) == (503, {"status": "maintenance"})
            assert client.post(f"{app.old_url}/maintenance", json={"enabled": "yes"}).status_code == 422
            assert client.post(f"{app.old_url}/maintenance", json={"enabled": False}).json() == {"maintenance": False}
            assert client.get(f"{app.old_url}/health").status_code == 200


def test_new_site_starts_in_maintenance_and_answers_once_its_database_appears(sandbox: SandboxInfo):
    reset(sandbox)
    app = sandbox.apps["burgerzaken"]
    try:
        with httpx.Client(timeout=10) as client:
            for other in sandbox.apps.values():
                assert client.get(f"{other.new_url}/maintenance").json() == {"maintenance": True}
                assert client.get(f"{other.new_url}/health").json() == {"status": "maintenance"}
            client.post(f"{app.new_url}/maintenance", json={"enabled": False}).raise_for_status()
            missing = client.get(f"{app.new_url}/health")
            assert (missing.status_code, missing.json()) == (503, {"status": "database-unavailable"})
            # What an import does, in miniature: role, database, main table.
            with pg_connect(sandbox.cloud) as admin:
                admin.execute(
                    sql.SQL("create role {} login password {}").format(sql.Identifier(app.db_user), sql.Literal(app.db_password))
                )
                admin.execute(sql.SQL("create database bzk owner {}").format(sql.Identifier(app.db_user)))
            with pg_connect(sandbox.cloud, "bzk", user=app.db_user, password=app.db_password) as conn:
                conn.execute("create table persons (id int primary key); insert into persons select generate_series(1, 3)")
            health = client.get(f"{app.new_url}/health")
            assert health.status_code == 200, health.text
            assert health.json() == {
                "status": "ok",
                "app": "burgerzaken",
                "site": "cloud",
                "database": "bzk",
                "cluster": "cloud",
                "rows": 3,
            }
    finally:
        reset(sandbox)


def test_each_application_has_its_own_address_and_port_at_each_site(sandbox: SandboxInfo):
    ports = [app.port for app in sandbox.apps.values()]
    assert len(set(ports)) == len(ports)
    for app in sandbox.apps.values():
        assert (app.old_url, app.new_url) == (f"http://127.0.0.2:{app.port}", f"http://127.0.0.3:{app.port}")
        assert app.hostname == f"{app.name}.{sandbox.powerdns.zone}"


# --- the estate ---------------------------------------------------------------------------

# (database, what a real estate contains, a query that is true when it is there)
ESTATE_FEATURES = [
    ("bzk", "a sequence in use", "select count(*) > 0 from pg_sequences where schemaname = 'public' and last_value > 1"),
    (
        "zaken",
        "a standalone sequence used by a default",
        "select last_value >= 100000 from pg_sequences where sequencename = 'zaaknummer_seq'",
    ),
    ("bzk", "a view", "select count(*) = 1 from pg_views where schemaname = 'public' and viewname = 'current_addresses'"),
    ("gis", "a view in the second schema", "select count(*) = 1 from pg_views where schemaname = 'horeca'"),
    ("zaken", "a materialized view with data", "select ispopulated from pg_matviews where matviewname = 'case_counts'"),
    (
        "zaken",
        "plpgsql and sql functions",
        "select count(*) = 3 from pg_proc p join pg_namespace n on n.oid = p.pronamespace where nspname = 'public'",
    ),
    ("zaken", "triggers", "select count(*) = 2 from pg_trigger where not tgisinternal"),
    (
        "zaken",
        "an enum type",
        "select count(*) = 5 from pg_enum e join pg_type t on t.oid = e.enumtypid where typname = 'case_status'",
    ),
    (
        "zaken",
        "jsonb",
        "select count(*) > 0 from information_schema.columns where table_schema = 'public' and data_type = 'jsonb'",
    ),
    (
        "portaal",
        "arrays",
        "select count(*) > 0 from information_schema.columns where table_name = 'accounts' and data_type = 'ARRAY'",
    ),
    (
        "woz",
        "numeric money",
        "select numeric_precision = 14 and numeric_scale = 2 from information_schema.columns where table_name = 'assessments' and column_name = 'waarde'",
    ),
    (
        "heffingen",
        "timestamptz",
        "select data_type = 'timestamp with time zone' from information_schema.columns where table_name = 'payments' and column_name = 'betaald_op'",
    ),
    (
        "heffingen",
        "a partitioned table with a default partition",
        "select count(*) = 6 from pg_inherits where inhparent = 'payments'::regclass",
    ),
    (
        "portaal",
        "a table without a primary key",
        "select count(*) = 0 from pg_constraint where conrelid = 'login_events'::regclass and contype = 'p'",
    ),
    (
        "documenten",
        "large objects owned by the app owner",
        "select count(*) = 3 from pg_largeobject_metadata where lomowner = 'zaaksysteem_owner'::regrole",
    ),
    (
        "documenten",
        "bytea with a generated column",
        "select attgenerated = 's' from pg_attribute where attrelid = 'documents'::regclass and attname = 'sha256'",
    ),
    (
        "gis",
        "an identity column",
        "select attidentity = 'a' from pg_attribute where attrelid = 'parcels'::regclass and attname = 'id'",
    ),
    (
        "bzk",
        "a mixed-case identifier",
        "select count(*) = 1 from information_schema.columns where table_name = 'addresses' and column_name = 'Straatnaam'",
    ),
    ("gis", "a non-ASCII identifier", "select count(*) = 1 from pg_tables where schemaname = 'horeca' and tablename = 'café'"),
    ("bzk", "a second schema", "select count(*) = 1 from pg_namespace where nspname = 'historie'"),
    ("gis", "comments on a schema and tables", "select count(*) = 3 from pg_description where objoid >= 16384"),
    (
        "zaken",
        "comments on a type, a function and a materialized view",
        "select count(*) = 3 from pg_description where objoid in ('case_status'::regtype, 'record_status_change'::regproc, 'case_counts'::regclass)",
    ),
]


@pytest.mark.parametrize(("database", "feature", "query"), ESTATE_FEATURES, ids=[f"{d}: {f}" for d, f, _ in ESTATE_FEATURES])
def test_estate_contains(sandbox: SandboxInfo, database: str, feature: str, query: str):
    with pg_connect(sandbox.onprem, database) as conn:
        assert conn.execute(query).fetchone() == (True,), f"{database} lacks {feature}"


@pytest.mark.parametrize("database", [db for dbs in ESTATE.values() for db in dbs])
def test_estate_database_is_owned_by_its_owner_role_and_granted_to_its_app_role(sandbox: SandboxInfo, database: str):
    app = estate.application_of(database)
    owner, login = estate.owner_role(app), estate.app_role(app)
    with pg_connect(sandbox.onprem, database) as conn:
        roles = dict(
            conn.execute("select rolname, rolcanlogin from pg_roles where rolname in (%s, %s)", (owner, login)).fetchall()
        )
        assert roles == {owner: False, login: True}
        assert conn.execute("select pg_get_userbyid(datdba) from pg_database where datname = current_database()").fetchone() == (
            owner,
        )
        foreign = conn.execute(
            "select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast') and pg_get_userbyid(c.relowner) <> %s",
            (owner,),
        ).fetchall()
        assert foreign == []
        ungranted = conn.execute(
            "select format('%%I.%%I', schemaname, tablename) from pg_tables where schemaname not in ('pg_catalog', 'information_schema') "
            "and not has_table_privilege(%s, format('%%I.%%I', schemaname, tablename), 'select, insert, update, delete')",
            (login,),
        ).fetchall()
        assert ungranted == []
        for table, rows in estate.row_counts(database, sandbox.scale).items():
            relation = {"relocations_archive": "historie.relocations_archive", "cafes": 'horeca."café"'}.get(table, table)
            assert conn.execute(f"select count(*) from {relation}").fetchone() == (rows,), f"{database}.{table}"
    password = sandbox.apps[app].db_password
    with pg_connect(sandbox.onprem, database, user=login, password=password) as conn:
        conn.execute(f"select 1 from {estate.MAIN_TABLE[database]} limit 1")


def test_status_trigger_records_history_on_a_status_change(sandbox: SandboxInfo):
    with pg_connect(sandbox.onprem, "zaken", autocommit=False) as conn:
        conn.execute("set transaction read write")  # the cutover may have frozen the source
        before = conn.execute("select count(*) from status_history where case_id = 1").fetchone()[0]
        conn.execute("update cases set status = 'opgeschort' where id = 1 and status <> 'opgeschort'")
        conn.execute("update cases set status = 'afgehandeld' where id = 1")
        after = conn.execute("select count(*) from status_history where case_id = 1").fetchone()[0]
        conn.rollback()
    assert after - before >= 1


def test_estate_size_grows_linearly_with_scale(sandbox: SandboxInfo):
    sizes = []
    names = [f"gis_scale_probe_{n}" for n in range(3)]
    try:
        for scale, name in enumerate(names):
            estate.build_database(sandbox.onprem, "gis", scale, name=name)
            with pg_connect(sandbox.onprem, name) as conn:
                conn.execute("vacuum")  # same visibility/free-space maps at every scale
                sizes.append(conn.execute("select pg_database_size(current_database())").fetchone()[0])
    finally:
        with pg_connect(sandbox.onprem) as admin:
            for name in names:
                admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
    first, second = sizes[1] - sizes[0], sizes[2] - sizes[1]
    assert first > 2_000_000, sizes
    assert abs(second - first) <= 0.05 * first, sizes


# --- down ---------------------------------------------------------------------------------


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_down_stops_every_process_it_started_and_nothing_else(sandbox: SandboxInfo, tmp_path: Path):
    directory = tmp_path / "second"
    bystander = subprocess.Popen(["sleep", "60"])  # not ours: must survive
    try:
        up = run_cli("sandbox", "up", "--scale", "0", "--dir", str(directory))
        assert up.returncode == 0, up.stderr
        second = SandboxInfo.load(directory)
        assert second.onprem.port not in (sandbox.onprem.port, sandbox.cloud.port)

        # The cloud starts empty except the migration superuser.
        with pg_connect(second.cloud) as conn:
            assert conn.execute("select array_agg(datname order by datname) from pg_database").fetchone() == (
                ["postgres", "template0", "template1"],
            )
            assert conn.execute("select array_agg(rolname) from pg_roles where rolname !~ '^pg_'").fetchone() == (["migrate"],)

        # A client that never finishes logging in: its sshd child must go too, on SIGTERM.
        lingering = socket.create_connection((second.ssh.host, second.ssh.port), timeout=5)
        assert lingering.recv(64).startswith(b"SSH-")

        recorded = {second.onprem.pid, second.cloud.pid, second.ssh.pid, second.powerdns.pid, *second.app_pids.values()}
        assert None not in recorded and len(recorded) == 6
        family = set(recorded)
        for pid in recorded:
            family |= processes.descendants(pid)
        assert len(family) > len(recorded)  # postgres backends at least
        ports = [(pg.host, pg.port) for pg in (second.onprem, second.cloud)] + [(second.ssh.host, second.ssh.port)]
        ports += [("127.0.0.1", int(second.powerdns.api_url.rsplit(":", 1)[1]))]
        ports += [(host, app.port) for app in second.apps.values() for host in ("127.0.0.2", "127.0.0.3")]
        assert all(listening(*address) for address in ports)
        markers = (str(directory), second.onprem.data_dir, second.cloud.data_dir)
        assert len(processes_mentioning(markers)) >= 6

        down = run_cli("sandbox", "down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
        assert "sandbox_process_killed" not in down.stdout  # everything stopped on SIGTERM
        lingering.close()
        assert {pid for pid in family if processes.alive(pid)} == set()
        assert processes_mentioning(markers) == []
        assert [address for address in ports if listening(*address)] == []
        assert processes.alive(bystander.pid)
        status = run_cli("sandbox", "status", "--dir", str(directory))
        assert status.returncode == 1 and "DOWN" in status.stdout

        # The session's sandbox is untouched.
        assert run_cli("sandbox", "status", "--dir", sandbox.dir).returncode == 0
    finally:
        bystander.kill()
        bystander.wait()
        purge = run_cli("sandbox", "down", "--purge", "--dir", str(directory))
    assert purge.returncode == 0, purge.stderr
    assert not directory.exists()
    assert not Path(second.onprem.data_dir).exists()  # the clusters' fallback dir too


def processes_mentioning(markers: tuple[str, ...]) -> list[str]:
    """Command lines of live processes that mention one of ``markers``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            line = processes.cmdline(int(entry.name))
            if line and any(marker in line for marker in markers):
                found.append(line)
    return found


def test_up_that_fails_names_the_service_leaves_no_process_and_can_be_rerun(sandbox: SandboxInfo, tmp_path: Path):
    directory = tmp_path / "broken"
    env = dict(os.environ, CUTOVER_SANDBOX_PDNS="/bin/false")  # a real fault: the DNS server dies at start
    failed = subprocess.run(
        [sys.executable, "-m", "cutover", "sandbox", "up", "--scale", "0", "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("cutover sandbox up: pdns_server") and failed.stderr.count("\n") == 1
    assert "Traceback" not in failed.stderr
    info = SandboxInfo.load(directory)
    assert info.powerdns.api_key not in failed.stdout + failed.stderr
    # Recorded pids were cleared by the clean-up, so look at every process's command line.
    markers = (str(directory), info.onprem.data_dir, info.cloud.data_dir)
    assert processes_mentioning(markers) == []
    try:
        again = run_cli("sandbox", "up", "--dir", str(directory))
        assert again.returncode == 0, again.stderr
        assert run_cli("sandbox", "status", "--dir", str(directory)).returncode == 0
    finally:
        assert run_cli("sandbox", "down", "--purge", "--dir", str(directory)).returncode == 0


def test_estate_at_scale_1_is_about_50_mb(sandbox: SandboxInfo):
    with pg_connect(sandbox.onprem) as conn:
        empty = conn.execute("select pg_database_size('template1')").fetchone()[0]
        sizes = dict(conn.execute("select datname, pg_database_size(datname) - %s from pg_database", (empty,)).fetchall())
    total_mb = sum(sizes[db] for dbs in ESTATE.values() for db in dbs) / 1e6
    assert 40 * sandbox.scale <= total_mb <= 75 * sandbox.scale, total_mb
    for database, expected in estate.MB_PER_SCALE.items():
        assert abs(sizes[database] / 1e6 - expected * sandbox.scale) <= 0.25 * expected * sandbox.scale, (
            database,
            sizes[database],
        )


def test_reset_command_empties_the_cloud_and_puts_the_apps_back(sandbox: SandboxInfo):
    app = sandbox.apps["gis"]
    with pg_connect(sandbox.cloud) as admin:
        admin.execute("create database leftover_from_a_cutover")
    httpx.post(f"{app.old_url}/maintenance", json={"enabled": True}, timeout=10).raise_for_status()
    result = run_cli("sandbox", "reset", "--dir", sandbox.dir)
    assert result.returncode == 0, result.stderr
    with pg_connect(sandbox.cloud) as admin:
        assert admin.execute("select count(*) from pg_database where datname = 'leftover_from_a_cutover'").fetchone() == (0,)
    assert httpx.get(f"{app.old_url}/maintenance", timeout=10).json() == {"maintenance": False}
