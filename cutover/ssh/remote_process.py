"""A program on the remote host, run in its own process group so that it can be stopped.

``run_remote`` and ``stream_to_remote`` are built on :func:`execute`. What it does on the
remote host, and why:

* **Own process group.** The command runs under ``setsid -w sh -c WRAPPER``: the wrapper
  becomes the leader of a new session and process group, prints ``cutover-pgid PID`` as the
  first line of stdout, and runs the command as its child. Stopping means
  ``kill -TERM -PGID`` (then ``-KILL`` after a grace period) sent over a *second* exec
  channel, so every process the command started dies with it. Closing the channel alone
  would not do: without a pty, sshd sends no SIGHUP and a restore would run on.
* **Connection loss.** A broken connection leaves no channel to send the kill over, so the
  wrapper starts a watchdog in the same group: it looks up the sshd process serving this
  connection (walking up ``/proc/PID/stat`` to the first ``sshd*`` ancestor) and, once that
  process is gone, kills the whole group. The watchdog's output goes to /dev/null, so it
  never holds the channel open, and the wrapper stops it when the command ends. Without
  ``/proc`` (not Linux) there is no watchdog; timeout and cancel still work.
* **End.** The wrapper's last stderr line is ``cutover-exit STATUS`` (taken out of the
  output before anyone sees it): over an OpenSSH carrier (:mod:`cutover.ssh.openssh`) an
  exit status of 255 without it means the connection broke.
* **Environment values.** They are sent as the first bytes on the command's stdin, as
  ``export NAME='value'`` lines that the wrapper reads with ``head -c LENGTH`` and ``eval``s
  before running the command; the command line carries only the length. So values never
  appear in ``ps`` output of other users, in sshd's logs or in ours, and no ``AcceptEnv``
  is needed on the server (``set_environment_variable`` would silently do nothing without
  it). GNU ``head -c`` reads no further than LENGTH from a pipe, so the command's own
  stdin follows intact. A temporary 0600 env file over SFTP was the alternative; it needs
  a writable directory and leaves the values on disk if the cleanup is cut short.
* **Secrets.** A value in the environment is readable in ``/proc/PID/environ`` as long as
  the program runs, and inherited by whatever it starts; a password goes in a file instead
  (``secret_files``: a 0600 file in a 0700 directory, written from the same header by the
  shell's ``printf`` builtin), removed when the command ends, is killed, or loses its
  connection.
"""

from __future__ import annotations

import collections
import re
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import paramiko
import structlog

from cutover.errors import PermanentStepError, TransientStepError

if TYPE_CHECKING:
    from cutover.ssh.openssh import Carrier

log = structlog.get_logger()

CHUNK = 64 * 1024
# Stdin is sent in large pieces: paramiko cuts them into packets itself, and fewer calls
# through its locks and window bookkeeping per MiB is what keeps a Python sender near the wire.
SEND_CHUNK = 1024 * 1024
TAIL_CHARS = 4000
KILL_GRACE_S = 5.0
_POLL_S = 0.02
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PGID_LINE = re.compile(rb"cutover-pgid (\d+)\n")
# The wrapper's last stderr line: its command's exit status, so that a status of 255 from
# an ssh process (its own failure, or the command's) can be told apart.
_EXIT_LINE = re.compile(r"cutover-exit (\d+)$")

# $1: length of the environment header on stdin, $2: the command.
_WRAPPER = r"""printf 'cutover-pgid %s\n' "$$"
p=$PPID
while [ "${p:-1}" -gt 1 ] && ! grep -qs '^sshd' "/proc/$p/comm"; do
  p=$(cut -d' ' -f4 "/proc/$p/stat" 2>/dev/null) || p=1
done
w=
if [ "${p:-1}" -gt 1 ]; then
  (while [ -d "/proc/$p" ]; do sleep 1; done; rm -rf "${TMPDIR:-/tmp}/cutover-secrets.$$"; kill -KILL "-$$") </dev/null >/dev/null 2>&1 &
  w=$!
fi
if [ "$1" -gt 0 ]; then eval "$(head -c "$1")" || exit 126; fi
sh -c "$2"
rc=$?
if [ -n "${cutover_secrets:-}" ]; then rm -rf "$cutover_secrets"; fi
if [ -n "$w" ]; then kill "$w" 2>/dev/null; fi
printf 'cutover-exit %s\n' "$rc" >&2
exit "$rc"
"""

# $1: the process group to stop. TERM first, KILL whatever is left after the grace period.
# The group's secret files (``secret_files``) go with it.
_KILL = r"""s="${TMPDIR:-/tmp}/cutover-secrets.$1"
kill -TERM "-$1" 2>/dev/null || { rm -rf "$s"; exit 0; }
i=0
while kill -0 "-$1" 2>/dev/null && [ "$i" -lt "$2" ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "-$1" 2>/dev/null
rm -rf "$s"
exit 0
"""


@dataclass(frozen=True)
class Outcome:
    """How a remote program ended."""

    exit_status: int
    duration_s: float
    bytes_sent: int
    stdout_tail: str
    stderr_tail: str


def env_header(env: Mapping[str, str] | None, secret_files: Mapping[str, str] | None = None) -> bytes:
    """The shell lines the wrapper evaluates: ``export NAME='value'`` for ``env``, and for
    each ``NAME: content`` of ``secret_files`` a 0600 file holding ``content`` in a 0700
    directory of the command's own (``$TMPDIR/cutover-secrets.PGID``, made with ``mkdir``,
    which refuses one that exists), with ``NAME`` exported as its path. The file is written
    by the shell's ``printf`` builtin, so its content is on no command line; the directory is
    removed when the command ends, when it is stopped (:func:`_kill_group`) and by the
    watchdog when the connection goes. Names are checked."""
    lines = []
    for name, value in (env or {}).items():
        _check_name(name)
        lines.append(f"export {name}={shlex.quote(str(value))}\n")
    if secret_files:
        lines.append('cutover_secrets="${TMPDIR:-/tmp}/cutover-secrets.$$"\nmkdir -m 700 "$cutover_secrets" || exit 126\n')
        for name, content in secret_files.items():
            _check_name(name)
            lines.append(
                f'(umask 077; printf %s {shlex.quote(content)} > "$cutover_secrets/{name}") || exit 126\n'
                f'export {name}="$cutover_secrets/{name}"\n'
            )
    return "".join(lines).encode()


def _check_name(name: str) -> None:
    if not _ENV_NAME.match(name):
        raise PermanentStepError(f"environment variable name {name!r} is not a valid shell name")


def wrap(command: str, header_length: int) -> str:
    """The command line sent to sshd: the wrapper in a new session, then ``command``."""
    return "exec setsid -w sh -c " + shlex.join([_WRAPPER, "cutover-remote", str(header_length), command])


def describe(command: str) -> str:
    """A short name for a command in messages: its program, never its arguments (which
    may hold anything the runbook author typed)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return words[0].rsplit("/", 1)[-1] if words else "remote command"


def address_of(client: paramiko.SSHClient) -> str:
    transport = client.get_transport()
    if transport is None:
        return "(closed connection)"
    try:
        host, port = transport.getpeername()[:2]
    except OSError:
        return "(closed connection)"
    return f"{host}:{port}"


class _Feeder(threading.Thread):
    """Sends the environment header and then ``source`` into the channel's stdin, then EOF.

    Runs in its own thread so that a slow producer or a full SSH window never stops the
    main loop from draining output and watching the clock.
    """

    def __init__(
        self,
        channel: paramiko.Channel,
        header: bytes,
        source: BinaryIO | None,
        on_chunk: Callable[[bytes], None] | None,
    ) -> None:
        super().__init__(name="cutover-ssh-stdin", daemon=True)
        self.channel = channel
        self.header = header
        self.source = source
        self.on_chunk = on_chunk
        self.sent = 0
        self.source_error: BaseException | None = None
        self.channel_closed = False
        self.finished = False

    def run(self) -> None:
        try:
            if self.header:
                self.channel.sendall(self.header)
            if self.source is not None:
                read = getattr(self.source, "read1", None) or self.source.read
                while True:
                    try:
                        chunk = read(SEND_CHUNK)
                    except Exception as exc:  # a failing local source: report, never send EOF
                        self.source_error = exc
                        return
                    if not chunk:
                        break
                    self.channel.sendall(chunk)
                    self.sent += len(chunk)
                    if self.on_chunk is not None:
                        self.on_chunk(chunk)
            self.channel.shutdown_write()
            self.finished = True
        except (OSError, EOFError, paramiko.SSHException):
            # The remote side closed (the command exited early, or was killed) or the
            # connection broke; the main loop tells which from the exit status.
            self.channel_closed = True


class _Lines:
    """Splits a byte stream into lines, keeping the unfinished last one for later."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.pending = b""

    def feed(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self.emit(line.decode("utf-8", "replace").rstrip("\r"))

    def flush(self) -> None:
        if self.pending:
            line, self.pending = self.pending, b""
            self.emit(line.decode("utf-8", "replace").rstrip("\r"))


def execute(
    client: paramiko.SSHClient,
    command: str,
    *,
    env: Mapping[str, str] | None = None,
    secret_files: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    timeout_s: float | None = None,
    cancel: threading.Event | None = None,
    on_stdout: Callable[[bytes], None] | None = None,
    on_stderr_line: Callable[[str], None] | None = None,
    on_chunk: Callable[[bytes], None] | None = None,
    label: str | None = None,
    carrier: Carrier | None = None,
) -> Outcome:
    """Run ``command`` through the remote user's shell in its own process group.

    ``stdin`` is read in a worker thread and sent to the command (EOF at its end);
    ``on_chunk`` sees each chunk after it was sent, in that thread. ``on_stdout`` gets the
    command's stdout bytes and ``on_stderr_line`` each stderr line, in the calling thread.

    Returns when the command has exited, whatever its status. Raises TransientStepError
    when the timeout passes or the connection breaks, PermanentStepError when ``cancel``
    is set or the local source fails; in each case the remote process group is killed
    first (over a second channel, or by the remote watchdog when the connection is gone).
    ``secret_files`` become 0600 files named by environment variables (:func:`env_header`),
    e.g. ``{"PGPASSFILE": line}``: the command's environment then holds only their paths.
    ``label`` names the command in messages (default: its program name). With a
    ``carrier`` (:class:`cutover.ssh.openssh.Carrier` for the same host) the command and its
    bytes go through an ``ssh`` process; ``client``'s connection still stops it and is
    watched: when either connection breaks, TransientStepError.
    """
    from cutover.process import STOPPING

    cancel = cancel or STOPPING  # a stopping process (cancelled flow run) cancels them all
    address = address_of(client)
    label = label or describe(command)
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise TransientStepError(f"SSH connection to {address} is closed; cannot run {label}")
    header = env_header(env, secret_files)
    if cancel is not None and cancel.is_set():
        raise PermanentStepError(f"{label} on {address} was cancelled before it started")
    start = time.monotonic()
    deadline = start + timeout_s if timeout_s else None
    channel: Any
    try:
        if carrier is not None:
            channel = carrier.open(wrap(command, len(header)))
        else:
            channel = transport.open_session(timeout=30)
            channel.exec_command(wrap(command, len(header)))
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise TransientStepError(f"cannot start {label} on {address}: {exc or type(exc).__name__}") from exc

    stdout_tail: collections.deque[str] = collections.deque()
    stderr_tail: collections.deque[str] = collections.deque()
    pgid: int | None = None
    preamble = b""

    def keep(tail: collections.deque[str], text: str) -> None:
        tail.append(text)
        while sum(map(len, tail)) > TAIL_CHARS and len(tail) > 1:
            tail.popleft()

    wrapper_exit: list[int] = []

    def stderr_line(line: str) -> None:
        match = _EXIT_LINE.search(line)
        if match is not None:
            wrapper_exit.append(int(match.group(1)))
            line = line[: match.start()]
            if not line:
                return
        keep(stderr_tail, line + "\n")
        if on_stderr_line is not None:
            on_stderr_line(line)
        else:
            log.info("remote_output", address=address, program=label, stream="stderr", line=line)

    errors = _Lines(stderr_line)
    feeder = _Feeder(channel, header, stdin, on_chunk)
    feeder.start()

    def stdout_data(data: bytes) -> None:
        nonlocal pgid, preamble
        if pgid is None:
            preamble += data
            match = _PGID_LINE.match(preamble)
            if match is None:
                if len(preamble) > 64 or (b"\n" in preamble):
                    # Not our wrapper's first line: keep it as output, stop looking.
                    pgid, data, preamble = 0, preamble, b""
                else:
                    return
            else:
                pgid, data, preamble = int(match.group(1)), preamble[match.end() :], b""
        if data:
            keep(stdout_tail, data.decode("utf-8", "replace"))
            if on_stdout is not None:
                on_stdout(data)

    def drain() -> bool:
        got = False
        while channel.recv_ready():
            stdout_data(channel.recv(CHUNK))
            got = True
        while channel.recv_stderr_ready():
            errors.feed(channel.recv_stderr(CHUNK))
            got = True
        return got

    def stop(reason: str) -> None:
        # Stopping right after the start: the group exists, but its id may still be on
        # the way. Wait for it, or the kill would miss the group.
        until = time.monotonic() + KILL_GRACE_S
        while pgid is None and not channel.exit_status_ready() and time.monotonic() < until and transport.is_active():
            if not drain():
                time.sleep(_POLL_S)
        _kill_group(transport, pgid, address)
        # Let the wrapper's exit arrive so that the channel closes cleanly.
        until = time.monotonic() + KILL_GRACE_S
        while not channel.exit_status_ready() and time.monotonic() < until and transport.is_active():
            drain()
            time.sleep(_POLL_S)
        channel.close()
        log.warning("remote_stopped", address=address, program=label, pgid=pgid, reason=reason)

    try:
        while True:
            got = drain()
            if channel.exit_status_ready():
                drain()
                break
            if not transport.is_active() or (channel.closed and not channel.exit_status_ready()):
                raise TransientStepError(f"SSH connection to {address} broke while running {label}; the remote watchdog stops it")
            if cancel is not None and cancel.is_set():
                stop("cancelled")
                raise PermanentStepError(f"{label} on {address} was cancelled; its process group was killed")
            if deadline is not None and time.monotonic() > deadline:
                stop("timeout")
                raise TransientStepError(f"{label} on {address} timed out after {timeout_s:g}s; its process group was killed")
            if feeder.source_error is not None:
                stop("source_failed")
                raise PermanentStepError(
                    f"reading the input for {label} on {address} failed: {feeder.source_error}"
                ) from feeder.source_error
            if not got:
                time.sleep(_POLL_S)
    except BaseException:
        # KeyboardInterrupt or a failing callback: still never leave the group running.
        if not channel.exit_status_ready() and not channel.closed:
            try:
                stop("interrupted")
            except Exception:  # best effort while already failing
                pass
        raise
    finally:
        errors.flush()
    exit_status = channel.recv_exit_status()
    feeder.join(timeout=1.0)
    channel.close()
    if exit_status == -1 and not transport.is_active():
        # paramiko closes every channel of a dead transport with status -1.
        raise TransientStepError(f"SSH connection to {address} broke while running {label}; the remote watchdog stops it")
    if carrier is not None and pgid is not None and exit_status in (255, -1) and not wrapper_exit:
        raise TransientStepError(
            f"SSH connection to {address} broke while running {label} (ssh exited {exit_status}); the remote watchdog stops it"
        )
    if pgid is None:
        if carrier is not None and exit_status == 255:
            raise TransientStepError(f"{label} on {address}: ssh could not run it: {''.join(stderr_tail).strip()[-300:]}")
        raise PermanentStepError(
            f"{label} on {address} did not start (exit status {exit_status}): {''.join(stderr_tail).strip()[-300:]}"
        )
    return Outcome(
        exit_status=exit_status,
        duration_s=round(time.monotonic() - start, 3),
        bytes_sent=feeder.sent,
        stdout_tail="".join(stdout_tail)[-TAIL_CHARS:],
        stderr_tail="".join(stderr_tail)[-TAIL_CHARS:],
    )


def _kill_group(transport: paramiko.Transport, pgid: int | None, address: str) -> None:
    """TERM, then KILL, the remote process group, over a channel of its own."""
    if not pgid or not transport.is_active():
        return
    grace_ticks = str(int(KILL_GRACE_S * 10))
    try:
        channel = transport.open_session(timeout=10)
        channel.exec_command("sh -c " + shlex.join([_KILL, "cutover-kill", str(pgid), grace_ticks]))
        until = time.monotonic() + KILL_GRACE_S + 10
        while not channel.exit_status_ready() and time.monotonic() < until and transport.is_active():
            time.sleep(_POLL_S)
        channel.close()
    except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
        log.warning("remote_kill_failed", address=address, pgid=pgid, error=type(exc).__name__)
