"""The shell wrapper every remote command runs under, exercised with the local sh: the
process-group line, environment values delivered on stdin, and the command's own stdin."""

from __future__ import annotations

import os
import subprocess

import pytest

from cutover.errors import PermanentStepError
from cutover.ssh.remote_process import describe, env_header, wrap

TRICKY = {
    "PGPASSWORD": 'it\'s a "secret" with $(rm -rf /) and `ticks`',
    "MULTI_LINE": "line one\nline two\n",
    "EMPTY": "",
}


def run_wrapped(command: str, env: dict[str, str] | None, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    header = env_header(env)
    return subprocess.run(["sh", "-c", wrap(command, len(header))], input=header + stdin, capture_output=True, timeout=10)


def test_first_stdout_line_is_the_process_group_of_the_command() -> None:
    done = run_wrapped('ps -o pgid= -p $$ | tr -d " "', None, b"")
    first, rest = done.stdout.decode().split("\n", 1)
    pgid = first.removeprefix("cutover-pgid ")
    assert first.startswith("cutover-pgid ") and pgid.isdigit()
    assert rest.strip() == pgid  # the command runs in the group the line names
    assert int(pgid) != os.getpgid(0)


def test_environment_values_reach_the_command_verbatim_and_stdin_follows_intact() -> None:
    payload = bytes(range(256)) * 64
    done = run_wrapped(
        'printf %s "$PGPASSWORD" > /dev/stderr; printf "|%s|" "$MULTI_LINE" "$EMPTY" >&2; cat',
        TRICKY,
        payload,
    )
    assert done.returncode == 0, done.stderr
    # the wrapper's own last line says how the command ended (remote_process: "End")
    assert done.stderr.decode() == TRICKY["PGPASSWORD"] + "|line one\nline two\n|" + "||" + "cutover-exit 0\n"
    assert done.stdout.split(b"\n", 1)[1] == payload


def test_values_travel_on_stdin_never_on_the_command_line() -> None:
    header = env_header(TRICKY)
    command_line = wrap("pg_restore -d app", len(header))
    for value in TRICKY.values():
        if value:
            assert value not in command_line
    assert str(len(header)) in command_line


def test_exit_status_of_the_command_is_passed_through() -> None:
    assert run_wrapped("exit 7", {"A": "b"}, b"").returncode == 7


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "A;rm", ""])
def test_invalid_environment_names_are_refused(name: str) -> None:
    with pytest.raises(PermanentStepError):
        env_header({name: "x"})


def test_messages_name_the_program_not_its_arguments() -> None:
    assert describe("/usr/lib/postgresql/15/bin/pg_restore -d 'app' --password-file=s3cret") == "pg_restore"
    assert describe("") == "remote command"
