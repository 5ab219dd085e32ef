"""Preflight on the sandbox, as an operator runs it: ``cutover preflight`` through its
deployment and the worker (so secrets resolve in the worker's environment), all green on
the sandbox; red, with each problem named, when the pinned host key is wrong, a cluster is
stopped, a secret is unset and the DNS API key is wrong; and then a cutover run of that
runbook stops before its first freeze, changing nothing. TTL lowering with a short TTL:
lowered and journaled; a live preflight and the switch itself refuse until the old TTL
has passed, and the rule allows the switch from that moment on.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cutover.dns.provider import RecordChange
from cutover.errors import PermanentStepError
from cutover.phases import dns, endpoints
from cutover.phases.ttl import refuse_unexpired, switchable_from
from cutover.postgres.endpoint import connect
from cutover.runbook.loader import load_runbook
from cutover.sandbox.info import SandboxInfo
from cutover.sandbox.reset import reset
from tests import faults
from tests.conftest import run_cli
from tests.integration.test_crash_and_cancel import endpoint, task_runs_named

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[2] / "runbooks" / "demo.yaml"


@pytest.fixture
def estate(sandbox: SandboxInfo) -> Iterator[SandboxInfo]:
    reset(sandbox)
    yield sandbox
    reset(sandbox)


def variant(tmp_path: Path, name: str, edit=None) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    data["cutover"] = name
    data["window"] = {k: v.isoformat() for k, v in data["window"].items()}
    if edit:
        edit(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    load_runbook(path)
    return path


def table_lines(out: str, status: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(status + " ")]


def copy_first_database(data: dict[str, Any]) -> None:
    data["applications"][0]["databases"][0]["method"] = "copy"


def test_preflight_of_the_sandbox_is_green_but_for_the_privileges_it_holds_beyond_need(
    estate, cutover_worker, prefect_api, tmp_path
):
    # one database by the copy method, whose way in (the tunnel) is checked too
    runbook = variant(tmp_path, "werkendam", copy_first_database)
    done = run_cli("preflight", str(runbook), "--api", prefect_api.api_url)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.split(" ", 1)[0] in ("green", "AMBER", "RED")]
    amber = [line for line in rows if not line.startswith("green ")]
    assert rows and all(line.split()[:2] == ["AMBER", "privileges"] for line in amber), "\n".join(rows)
    # the sandbox's migration role is a superuser on both sites, and the demo names no smoke role
    text = "\n".join(amber)
    assert sum("is a superuser; the run needs less" in line for line in amber) == 2, text
    assert "on a source: own the databases" in text and "on a target: CREATEDB and CREATEROLE" in text
    assert any("smoke query(ies) run as" in line and "name a smoke_user" in line for line in amber), text
    areas = {line.split()[1] for line in rows}
    assert areas == {"window", "secret", "postgres", "privileges", "source", "tools", "ssh", "tunnel", "disk", "dns", "http"}, (
        areas
    )
    (tunnel,) = [line for line in rows if line.split()[1] == "tunnel"]
    assert tunnel.startswith("green ") and "cloud PostgreSQL through SSH" in tunnel and "logged in" in tunnel, tunnel
    assert "all secret" not in done.stdout and "9 secret reference(s) resolve in this worker's environment" in done.stdout


def wrong_everything(tmp_path: Path):
    key = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    other = " ".join(key.with_suffix(".pub").read_text().split()[:2])

    def edit(data: dict[str, Any]) -> None:
        data["sites"]["cloud"]["ssh"]["host_key"] = other
        data["dns"]["api_key"] = "env:CUTOVER_ONPREM_PG_PASSWORD"  # set on the worker, but not the DNS key
        data["applications"][0]["databases"][0]["roles"]["burgerzaken_app"]["password"] = "env:CUTOVER_TEST_NEVER_SET"
        copy_first_database(data)

    return edit, other


def test_preflight_names_every_red_item_and_the_cutover_stops_before_its_first_freeze(
    estate, cutover_worker, prefect_api, tmp_path
):
    edit, _other_key = wrong_everything(tmp_path)
    runbook = variant(tmp_path, "werkendam-preflight-red", edit)
    before = faults.estate_snapshot(estate)
    with connect(endpoint(estate.cloud), "postgres", autocommit=True) as admin:
        databases = {r[0] for r in admin.execute("select datname from pg_database")}
        roles = {r[0] for r in admin.execute("select rolname from pg_roles")}
    with faults.cluster_stopped(estate, "cloud"):
        checked = run_cli("preflight", str(runbook), "--api", prefect_api.api_url)
        ran = run_cli("run", str(runbook), "--outside-window", "--api", prefect_api.api_url, timeout=300)

    assert checked.returncode == 1, checked.stdout + checked.stderr
    red = table_lines(checked.stdout, "RED")
    text = "\n".join(red)
    assert any(" ssh " in line and "does not match the pinned key" in line and "pinned SHA256:" in line for line in red), text
    assert any(" tunnel " in line and "not tried: SSH to the site failed" in line for line in red), text
    assert any(" secret " in line and "CUTOVER_TEST_NEVER_SET" in line and "not set" in line for line in red), text
    assert any(" postgres " in line and "cloud" in line for line in red), text
    assert any(" dns " in line and ("401" in line or "refused" in line or "key" in line) for line in red), text
    assert "preflight of werkendam-preflight-red:" in checked.stdout and " red (" in checked.stdout

    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "nothing was changed" in ran.stdout and "RED" in ran.stdout, ran.stdout
    run_id = ran.stdout.split("flow run ", 1)[1].split(":", 1)[0]
    assert not task_runs_named(prefect_api.api_url, run_id, "burgerzaken/freeze"), "no step ran after the red preflight"
    # nothing frozen, nothing created on the target, nothing switched
    assert faults.estate_snapshot(estate) == before
    with connect(endpoint(estate.cloud), "postgres", autocommit=True) as admin:
        assert {r[0] for r in admin.execute("select datname from pg_database")} == databases
        assert {r[0] for r in admin.execute("select rolname from pg_roles")} == roles


class Switches:
    """The DNS switch's journal (our own port), kept in a dict for this test."""

    def __init__(self) -> None:
        self.entry: dict[str, Any] | None = None

    def get(self) -> dict[str, Any] | None:
        return self.entry

    def put(self, entry: dict[str, Any]) -> None:
        self.entry = entry


def test_lowered_ttl_is_journaled_and_the_switch_waits_until_the_old_ttl_has_passed(
    estate, cutover_worker, prefect_api, tmp_path
):
    from cutover.journal import TtlRecord
    from tasks.journal import estate_journal

    name = "werkendam-ttl-test"
    old_ttl = 120  # far longer than the two preflight runs that must fit in it, on a busy machine

    def short_ttls(data: dict[str, Any]) -> None:
        data["applications"] = [a for a in data["applications"] if a["name"] == "gis"]
        data["applications"][0].pop("depends_on", None)
        data["applications"][0]["dns"][0]["ttl"] = 1
        data["gates"] = []

    runbook_path = variant(tmp_path, name, short_ttls)
    runbook = load_runbook(runbook_path)
    record = runbook.applications[0].dns[0]
    with endpoints.dns_provider(runbook) as provider:
        current = provider.get(record.name, record.type)
        provider.apply(
            RecordChange(name=record.name, rtype=record.type, ttl=old_ttl, values=current.values, expect_current=current.values)
        )
    journal = TtlRecord(estate_journal(name))
    journal.put({})
    try:
        checked = run_cli("preflight", str(runbook_path), "--api", prefect_api.api_url)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert any(f"TTL {old_ttl}, above the runbook's 1" in line for line in table_lines(checked.stdout, "AMBER")), (
            checked.stdout
        )

        lowered = run_cli("preflight", str(runbook_path), "--lower-ttl", "--api", prefect_api.api_url)
        assert lowered.returncode == 0, lowered.stdout + lowered.stderr
        assert f"TTL of {record.name} A lowered from {old_ttl} to 1 s" in lowered.stdout
        entry = journal.get()[f"{record.name} A"]
        assert entry["old_ttl"] == old_ttl and entry["lowered_to"] == 1
        with endpoints.dns_provider(runbook) as provider:
            assert provider.get(record.name, record.type).ttl == 1

        live = run_cli("preflight", str(runbook_path), "--live", "--outside-window", "--api", prefect_api.api_url)
        assert live.returncode == 1 and any("the switch waits until" in line for line in table_lines(live.stdout, "RED")), (
            live.stdout
        )
        switches = Switches()
        with pytest.raises(PermanentStepError, match="resolvers may hold the old TTL until"):
            dns.switch_records(runbook, runbook.applications[0], switches, ttl_journal=journal)
        assert switches.entry is None, "refused before anything was journaled or changed"

        # the rule at its edge, on the journaled lowering: refused a moment before the old TTL has passed, then allowed
        until = switchable_from(entry)
        assert until == datetime.fromisoformat(entry["at"]) + timedelta(seconds=old_ttl)
        with pytest.raises(PermanentStepError):
            refuse_unexpired(runbook.applications[0], journal, now=until - timedelta(seconds=1))
        refuse_unexpired(runbook.applications[0], journal, now=until)
    finally:
        journal.put({})
