"""Least privilege for the programs a step starts: their environment is an allow-list plus
their own connection parameters, a PostgreSQL password reaches them only in a 0600 passfile
(locally a memory file, on the target host a file the remote wrapper writes and removes),
and the process guardian holds nothing of ours."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from cutover.child_env import program_environment
from cutover.errors import PermanentStepError
from cutover.postgres.endpoint import PgEndpoint
from cutover.postgres.passfile import client_environment, passfile_line, remote_passfile
from cutover.process import guardian_pid, run_program
from cutover.ssh import remote_process
from cutover.ssh.remote_process import env_header, wrap

ESTATE_SECRET = "estate-secret-9f2c41d7e3"
PASSWORD = "pa:ss\\word-with-$(id)-and-'quotes'"


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)  # type: ignore[misc]


@pytest.fixture
def estate_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's environment as a flow run's: the estate's secrets in it."""
    monkeypatch.setenv("CUTOVER_ONPREM_PG_PASSWORD", ESTATE_SECRET)
    monkeypatch.setenv("CUTOVER_PDNS_API_KEY", ESTATE_SECRET + "-dns")
    monkeypatch.setenv("PGPASSWORD", ESTATE_SECRET + "-pg")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")


def test_a_program_gets_the_allow_list_and_its_own_variables_and_nothing_else(estate_secrets: None) -> None:
    result = run_program(["env"], env={"PGHOST": "db1"}, timeout_s=10, log_name="env", capture_stdout=True)
    names = {line.split("=", 1)[0] for line in (result.stdout or b"").decode().splitlines()}
    assert ESTATE_SECRET not in (result.stdout or b"").decode()
    assert {"PGHOST", "PATH", "LC_ALL"} <= names
    assert names <= {"PGHOST", "LC_ALL"} | set(program_environment()), names - set(program_environment())


def test_a_program_started_without_env_inherits_no_secret_either(estate_secrets: None) -> None:
    result = run_program(["env"], timeout_s=10, log_name="env", capture_stdout=True)
    assert ESTATE_SECRET not in (result.stdout or b"").decode()
    assert "PATH=" in (result.stdout or b"").decode()


def test_the_guardian_holds_no_variable_of_ours_but_the_allow_list(estate_secrets: None) -> None:
    run_program(["true"], timeout_s=10, log_name="true")  # starts a guardian if there is none
    pid = guardian_pid()
    assert pid is not None
    environ = _environ(pid)
    assert ESTATE_SECRET not in repr(environ)
    assert set(environ) <= set(program_environment()) | {"LC_ALL"}


def test_the_passfile_line_escapes_what_libpq_would_split_on() -> None:
    assert passfile_line("a:b\\c") == "*:*:*:*:a\\:b\\\\c\n"
    with pytest.raises(ValueError):
        passfile_line("two\nlines")


def test_a_local_passfile_is_a_0600_memory_file_that_only_lives_as_long_as_the_block() -> None:
    endpoint = PgEndpoint(host="db1", port=5432, user="migrate", password=PASSWORD)
    with client_environment(endpoint) as env:
        assert PASSWORD not in repr(env) and "PGPASSWORD" not in env
        path = env["PGPASSFILE"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_ISREG(os.stat(path).st_mode)
        # the program opens the file by its path, as libpq does
        shown = run_program(["cat", path], env=env, timeout_s=10, log_name="cat", capture_stdout=True)
        assert (shown.stdout or b"").decode() == passfile_line(PASSWORD)
        assert not path.startswith(("/tmp", "/var")), "never on a disk"
    assert not os.path.exists(path)


def test_without_a_password_there_is_no_passfile() -> None:
    with client_environment(PgEndpoint(host="db1", port=5432, user="migrate")) as env:
        assert "PGPASSFILE" not in env and env["PGUSER"] == "migrate"
    assert remote_passfile(PgEndpoint(host="db1", port=5432, user="migrate")) == {}


def _wrapped(command: str, secret_files: dict[str, str], tmp: Path) -> subprocess.Popen[bytes]:
    header = env_header({"PGUSER": "migrate"}, secret_files)
    proc = subprocess.Popen(
        ["sh", "-c", wrap(command, len(header))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp)},
    )
    assert proc.stdin is not None
    proc.stdin.write(header)
    proc.stdin.close()
    proc.stdin = None  # sent: communicate() has nothing more to send
    return proc


def test_a_remote_secret_file_is_0600_in_a_0700_directory_and_is_gone_after_the_command(tmp_path: Path) -> None:
    files = remote_passfile(PgEndpoint(host="db1", port=5432, user="migrate", password=PASSWORD))
    command = 'stat -c "%a" "$(dirname "$PGPASSFILE")" "$PGPASSFILE"; cat "$PGPASSFILE"; tr "\\0" "\\n" < /proc/$$/environ'
    proc = _wrapped(command, files, tmp_path)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = out.decode().split("\n", 1)[1]  # after the wrapper's process-group line
    assert lines.startswith("700\n600\n" + passfile_line(PASSWORD)), lines
    environment = lines.split(passfile_line(PASSWORD), 1)[1]
    assert "PGPASSFILE=" in environment and PASSWORD not in environment
    assert list(tmp_path.iterdir()) == [], "removed when the command ended"
    assert PASSWORD not in wrap(command, 999)


def test_a_remote_secret_file_goes_with_its_process_group_when_it_is_killed(tmp_path: Path) -> None:
    proc = _wrapped("sleep 30", {"PGPASSFILE": passfile_line(PASSWORD)}, tmp_path)
    assert proc.stdout is not None
    pgid = int(proc.stdout.readline().split()[1])
    deadline = time.monotonic() + 10
    while not list(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    (directory,) = tmp_path.iterdir()
    assert directory.name == f"cutover-secrets.{pgid}" and stat.S_IMODE(directory.stat().st_mode) == 0o700
    kill = subprocess.run(
        ["sh", "-c", remote_process._KILL, "cutover-kill", str(pgid), "10"],
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)},
        timeout=20,
    )
    assert kill.returncode == 0
    proc.wait(timeout=10)
    assert proc.returncode in (-signal.SIGTERM, -signal.SIGKILL, 128 + signal.SIGTERM)
    assert list(tmp_path.iterdir()) == []


def test_a_secret_directory_that_exists_already_stops_the_command(tmp_path: Path) -> None:
    """Someone else's directory (or symlink) at the name is never written into: ``mkdir`` refuses."""
    header = env_header(None, {"PGPASSFILE": "x"}).replace(b"$$", b"planted")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "cutover-secrets.planted").symlink_to(tmp_path / "elsewhere")
    done = subprocess.run(
        ["sh", "-c", wrap("echo ran", len(header))],
        input=header,
        capture_output=True,
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)},
        timeout=10,
    )
    assert done.returncode == 126 and b"ran" not in done.stdout.split(b"\n", 1)[1]
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_pinned_postgres_ca_reaches_local_programs_by_path_and_the_target_host_by_content(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    endpoint = PgEndpoint(
        host="db1", port=5432, user="migrate", password="pw-1234", sslmode="verify-full", sslrootcert=str(bundle)
    )
    assert "sslrootcert=" in endpoint.conninfo("postgres") and endpoint.libpq_env()["PGSSLROOTCERT"] == str(bundle)
    files = remote_passfile(endpoint)
    assert files == {"PGPASSFILE": passfile_line("pw-1234"), "PGSSLROOTCERT": bundle.read_text()}
    # on the target host the file the wrapper writes is what libpq reads (the header's export wins)
    header = env_header(endpoint.libpq_env(), files)
    done = subprocess.run(
        ["sh", "-c", wrap('cat "$PGSSLROOTCERT"', len(header))],
        input=header,
        capture_output=True,
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)},
        timeout=10,
    )
    assert done.stdout.split(b"\n", 1)[1].decode() == bundle.read_text()
    with pytest.raises(PermanentStepError, match="cannot be read"):
        remote_passfile(PgEndpoint(host="db1", port=5432, user="migrate", sslrootcert=str(tmp_path / "missing.pem")))
