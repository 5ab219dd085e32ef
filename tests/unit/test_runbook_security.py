"""What a runbook may say about files, TLS and the smoke login: files paths are relative to
a root the site declares and never climb out of it, turning TLS checks off is one explicit
setting (and contradicts a pinned bundle), a smoke password needs its smoke user."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from cutover.errors import PermanentStepError
from cutover.phases import endpoints
from cutover.runbook import parse_runbook
from tests.unit.runbook_texts import MINIMAL
from tests.unit.test_runbook_values import edited, problems_of

FILES = """\
    files:
      - {name: archive, from: old, to: new, source_path: SOURCE, target_path: TARGET}
"""
ROOTS = (
    ("  old:\n    postgres:", "  old:\n    files_root: /srv/old-share\n    postgres:"),
    (
        'host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"}',
        'host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE", files_root: /srv/files}',
    ),
)


def with_files(source: str, target: str, roots: bool = True) -> str:
    text = MINIMAL
    if roots:
        for old, new in ROOTS:
            text = edited(old, new, text)
    entry = FILES.replace("SOURCE", source).replace("TARGET", target)
    return edited(
        "    dns:\n      - {name: gis.example.test., to: 192.0.2.10}\n",
        "    dns:\n      - {name: gis.example.test., to: 192.0.2.10}\n" + entry,
        text,
    )


def test_hostile_but_relative_files_paths_are_accepted_as_they_are() -> None:
    hostile = '"it\'s; $(touch /tmp/pwned) `id` ünï 名前/a b.txt"'
    runbook = parse_runbook(with_files(hostile, hostile), "rb.yaml", {})
    (moved,) = runbook.application("gis").files
    assert moved.source_path == moved.target_path == "it's; $(touch /tmp/pwned) `id` ünï 名前/a b.txt"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/shadow", "must be relative to the site's files_root: no leading '/' or '~'"),
        ("~root/.ssh", "must be relative to the site's files_root: no leading '/' or '~'"),
        ("data/../../etc", "must not contain '..': it stays under the site's files_root"),
        ("..", "must not contain '..': it stays under the site's files_root"),
        ("data//x", "must not contain empty or '.' parts ('//', './', a trailing '/')"),
        ('"a\\tb"', "must not contain control characters (a newline, a tab...)"),
        ('"a\\nb"', "must not contain control characters (a newline, a tab...)"),
    ],
)
def test_a_files_path_that_could_leave_its_root_is_a_located_problem(path: str, message: str) -> None:
    problems = problems_of(with_files(path, "ok"))
    assert len(problems) == 1 and problems[0].endswith(f"applications[0].files[0].source_path: {message}"), problems
    problems = problems_of(with_files("ok", path))
    assert len(problems) == 1 and problems[0].endswith(f"applications[0].files[0].target_path: {message}"), problems


def test_files_from_or_to_a_site_without_a_declared_root_are_refused_in_one_pass() -> None:
    problems = problems_of(with_files("a", "b", roots=False))
    assert [p.split(": ", 1)[1] for p in problems] == [
        "applications[0].files[0].from: site 'old' declares no files_root: files are read only under a declared root",
        "applications[0].files[0].to: site 'new' declares no ssh.files_root: files land only under a declared root",
    ], problems


def test_turning_tls_checks_off_is_explicit_and_cannot_be_combined_with_a_pinned_bundle() -> None:
    text = MINIMAL.replace("applications:\n", "tls: {ca_bundle: /etc/ca.pem, insecure_skip_verify: true}\napplications:\n", 1)
    (problem,) = problems_of(text)
    assert "tls: ca_bundle and insecure_skip_verify contradict each other; give one" in problem
    (problem,) = problems_of(MINIMAL.replace("applications:\n", "tls: {verify: false}\napplications:\n", 1))
    assert "tls.verify" in problem, "there is no quiet spelling of 'off'"


def test_tls_verification_is_on_by_default_pinned_by_a_bundle_and_off_only_with_a_warning(tmp_path, monkeypatch) -> None:
    from structlog.testing import capture_logs

    default = endpoints.tls_verify(parse_runbook(MINIMAL, "rb.yaml", {}), "x")
    assert isinstance(default, ssl.SSLContext)
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    assert default.get_ca_certs(), "the default trust has CA certificates loaded"
    assert endpoints.tls_verify(parse_runbook(MINIMAL, "rb.yaml", {}), "y") is default, "loaded once per process"
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    pinned = parse_runbook(MINIMAL.replace("applications:\n", f"tls: {{ca_bundle: {bundle}}}\napplications:\n", 1), "rb.yaml", {})
    with pytest.raises(PermanentStepError, match=r"tls\.ca_bundle"):
        endpoints.tls_verify(pinned, "x")
    import certifi

    bundle.write_text(Path(certifi.where()).read_text())
    context = endpoints.tls_verify(pinned, "x")
    assert isinstance(context, ssl.SSLContext) and context is not default
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    bundle.write_text("not a certificate either, a changed bundle is read again\n")
    with pytest.raises(PermanentStepError, match=r"tls\.ca_bundle"):
        endpoints.tls_verify(pinned, "x")
    off = parse_runbook(
        MINIMAL.replace("applications:\n", "tls: {insecure_skip_verify: true}\napplications:\n", 1), "rb.yaml", {}
    )
    with capture_logs() as logs:
        assert endpoints.tls_verify(off, "gis.smoke[0] http") is False
    assert [(e["event"], e["log_level"], e["what"]) for e in logs] == [("tls_verification_off", "warning", "gis.smoke[0] http")]


def test_smoke_sql_runs_as_the_smoke_user_where_the_site_names_one(monkeypatch) -> None:
    text = MINIMAL.replace(
        "password: env:NEW_PG_PASSWORD, sslmode: disable}",
        "password: env:NEW_PG_PASSWORD, sslmode: disable, smoke_user: smoke_reader, smoke_password: env:SMOKE_PW}",
    )
    runbook = parse_runbook(text, "rb.yaml", {})
    monkeypatch.setenv("NEW_PG_PASSWORD", "migration-password")
    monkeypatch.setenv("SMOKE_PW", "smoke-password")
    monkeypatch.setenv("OLD_PG_PASSWORD", "old-password")
    smoke = endpoints.postgres(runbook, "new", login="smoke")
    assert (smoke.user, smoke.password) == ("smoke_reader", "smoke-password")
    migration = endpoints.postgres(runbook, "new")
    assert (migration.user, migration.password) == ("migrate", "migration-password")
    # a site without one: smoke SQL uses the site's user (still in a read-only transaction)
    assert endpoints.postgres(runbook, "old", login="smoke").user == "migrate"
    (problem,) = problems_of(text.replace("smoke_user: smoke_reader, ", ""))
    assert "smoke_password needs smoke_user" in problem
