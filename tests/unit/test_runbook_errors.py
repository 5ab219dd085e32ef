"""Every kind of broken runbook gets located, hinted errors: FILE:LINE:COL: path: message."""

from __future__ import annotations

import pytest

from cutover.errors import RunbookError
from cutover.runbook import parse_runbook
from tests.unit.runbook_texts import MINIMAL


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RunbookError) as caught:
        parse_runbook(text, "rb.yaml", environ or {})
    return [str(p) for p in caught.value.problems]


def test_minimal_runbook_is_valid():
    runbook = parse_runbook(MINIMAL, "rb.yaml", {})
    assert [a.name for a in runbook.applications] == ["gis", "portal"]
    assert runbook.applications[1].databases[0].method == "stream"


BROKEN = [
    pytest.param(
        ("    depends_on: [gis]", "    depend_on: [gis]"),
        ["rb.yaml:23:5: applications[1].depend_on: unknown key 'depend_on' (did you mean 'depends_on'?)"],
        id="misspelled-key",
    ),
    pytest.param(
        ("    depends_on: [gis]", "    depends_on: [gis2]"),
        ["rb.yaml:23:18: applications[1].depends_on[0]: unknown application 'gis2' (did you mean 'gis'?)"],
        id="unknown-dependency",
    ),
    pytest.param(
        ("  - name: gis\n", "  - name: gis\n    depends_on: [portal]\n"),
        ["rb.yaml:18:17: applications[0].depends_on: dependency cycle: gis -> portal -> gis"],
        id="dependency-cycle",
    ),
    pytest.param(
        ("password: env:OLD_PG_PASSWORD", "password: hunter2"),
        [
            "rb.yaml:7:70: sites.old.postgres.password: inline secret is not allowed; write a reference "
            "instead of the value: env:NAME (an environment variable) or secret:NAME (a Prefect Secret block)"
        ],
        id="inline-password",
    ),
    pytest.param(
        ("api_key: env:PDNS_API_KEY", "api_key: 12345678"),
        [
            "rb.yaml:13:12: dns.api_key: inline secret is not allowed; write a reference instead of the value: "
            "env:NAME (an environment variable) or secret:NAME (a Prefect Secret block)"
        ],
        id="inline-api-key-as-number",
    ),
    pytest.param(
        ("  end: 2027-07-19T06:00:00+02:00", "  end 2027-07-19T06:00:00+02:00"),
        ["rb.yaml:4:3: YAML syntax error: could not find expected ':' (while scanning a simple key)"],
        id="yaml-syntax",
    ),
    pytest.param(
        ("  end: 2027-07-19T06:00:00+02:00", "  end: 2027-07-15T06:00:00+02:00"),
        ["rb.yaml:4:8: window.end: the window ends before it starts"],
        id="window-ends-before-start",
    ),
    pytest.param(
        ("  start: 2027-07-16T18:00:00+02:00", "  start: 2027-07-16T18:00:00"),
        ["rb.yaml:3:10: window.start: needs a timezone, e.g. 2027-07-16T18:00:00+02:00"],
        id="naive-window",
    ),
    pytest.param(
        ("{name: gis.example.test., to: 192.0.2.10}", "{name: gis.example.org., to: 192.0.2.10}"),
        ["rb.yaml:21:16: applications[0].dns[0].name: record gis.example.org. is outside the zone example.test."],
        id="dns-outside-zone",
    ),
    pytest.param(
        ("      - {name: gis, from: old, to: new}", "      - {name: gis, from: olt, to: new}"),
        ["rb.yaml:19:27: applications[0].databases[0].from: unknown site 'olt' (did you mean 'old'?)"],
        id="unknown-site",
    ),
    pytest.param(
        ("database: portal, query", "database: portl, query"),
        ["rb.yaml:27:36: applications[1].smoke[0].sql.database: unknown database 'portl' on site 'new' (did you mean 'portal'?)"],
        id="unknown-database",
    ),
    pytest.param(
        ("  - name: portal\n", "  - name: gis\n"),
        [
            "rb.yaml:22:11: applications[1].name: duplicate application 'gis' (also applications[0])",
            "rb.yaml:23:18: applications[1].depends_on[0]: 'gis' depends on itself",
        ],
        id="duplicate-application",
    ),
    pytest.param(
        ("method: stream", "method: streem"),
        [
            "rb.yaml:25:52: applications[1].databases[0].method: should be 'stream', 'copy', 'file' or 'auto' (did you mean 'stream'?)"
        ],
        id="bad-choice",
    ),
    pytest.param(
        ("port: 5433", "port: five"),
        ["rb.yaml:9:39: sites.new.postgres.port: should be a valid integer, unable to parse string as an integer"],
        id="wrong-type",
    ),
    pytest.param(
        ("cutover: test-estate\n", ""),
        ["rb.yaml:1:1: missing required key 'cutover'"],
        id="missing-key",
    ),
    pytest.param(
        ("port: 5433", 'port: "${NEW_PORT}"'),
        [
            "rb.yaml:9:39: sites.new.postgres.port: environment variable NEW_PORT is not set (set it, or give a default: ${NEW_PORT:-value})"
        ],
        id="unset-environment-variable",
    ),
    pytest.param(
        ("  zone: example.test.\n", "  zone: example.test.\n  zone: other.test.\n"),
        ["rb.yaml:15:3: dns.zone: duplicate key 'zone' (first given at line 14)"],
        id="duplicate-key",
    ),
    pytest.param(
        ('host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"', "host_key: AAAA"),
        ["rb.yaml:10:83: sites.new.ssh.host_key: host_key must be a public key line such as 'ssh-ed25519 AAAA...'"],
        id="host-key-not-pinned-form",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), BROKEN)
def test_broken_runbook_reports_located_problem(edit, expected):
    old, new = edit
    assert old in MINIMAL, "the test's edit must apply to the base runbook"
    assert problems_of(MINIMAL.replace(old, new, 1)) == expected


def test_every_problem_is_reported_not_only_the_first():
    text = MINIMAL.replace("method: stream", "method: streem").replace("port: 5433", "port: five")
    text = text.replace("    depends_on: [gis]", "    depend_on: [gis]")
    found = problems_of(text)
    assert len(found) == 3
    assert [p.split(":")[1] for p in found] == sorted((p.split(":")[1] for p in found), key=int)


def test_secret_value_is_never_echoed_in_a_problem():
    found = problems_of(MINIMAL.replace("password: env:OLD_PG_PASSWORD", "password: s3cr3t-Value"))
    assert all("s3cr3t-Value" not in p for p in found)


def test_interpolation_uses_environment_and_defaults():
    text = MINIMAL.replace("port: 5433", 'port: "${NEW_PORT:-6543}"').replace(
        "host: 127.0.0.1, port: 2222", 'host: "${SSH_HOST}", port: 2222'
    )
    runbook = parse_runbook(text, "rb.yaml", {"SSH_HOST": "10.0.0.9"})
    assert runbook.sites["new"].postgres.port == 6543
    assert runbook.sites["new"].ssh.host == "10.0.0.9"


def test_missing_file_is_a_located_problem(tmp_path):
    from cutover.runbook import load_runbook

    with pytest.raises(RunbookError) as caught:
        load_runbook(tmp_path / "nope.yaml")
    assert str(caught.value.problems[0]).endswith("nope.yaml:1:1: file not found")
