"""sha256 on the remote host: of a file, of a stream on its way into a command, of a file
being appended to. Each as a shell command line, run by :mod:`cutover.ssh.remote_process`.

The target host needs only POSIX sh and coreutils; where it has more, the faster program
is taken, because on a loaded host the hash decides whether the copy keeps up with the
wire (bench/transfer.py, per GiB on the benchmark machine):

* ``openssl dgst`` uses the CPU's SHA instructions: 0.7 s of CPU against 2.9 s for
  coreutils' ``sha256sum`` (the fallback). Both print the hex digest as the first word.
* ``python3``, where installed, copies and hashes in one process with 1 MiB buffers
  (hashlib uses the same instructions). The coreutils way to split a stream, ``tee`` into
  two FIFOs, moves it in 8 KiB pieces through two more pipes and costs about 1.3 s more
  CPU per GiB on the receiving host.

Whatever program runs, the digest is of the bytes the command (or the file) was given.
"""

from __future__ import annotations

import re
import shlex

import paramiko

from cutover.ssh import remote_process

HASH_TIMEOUT_S = 3600.0
MARK = "cutover-sha256"
_MARK_LINE = re.compile(MARK + r" ([0-9a-f]{64}|-)$")

# Reads stdin, prints "HEX ..." on stdout.
SHA256_STDIN = "if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi"

# python3 -c PASS_THROUGH: stdin to stdout in 1 MiB pieces, then "cutover-sha256 HEX" on
# stderr: the hash of what was written to stdout. A reader that goes away early ends the
# copy (EPIPE), and the hash then covers only what it was given. Python 3.4 syntax.
PASS_THROUGH = r"""
import hashlib, os, sys
h = hashlib.sha256()
source = sys.stdin.buffer.raw
buf = bytearray(1 << 20)
view = memoryview(buf)
try:
    while True:
        n = source.readinto(buf)
        if not n:
            break
        done = 0
        while done < n:
            done += os.write(1, view[done:n])
        h.update(view[:n])
except BrokenPipeError:
    pass
os.close(1)
sys.stderr.write("cutover-sha256 %s\n" % h.hexdigest())
"""

# python3 -c APPEND PATH OFFSET: keep the first OFFSET bytes of PATH (created if missing;
# exit 3 if it is shorter), append stdin after them, then print "cutover-sha256 HEX" of the
# whole file: the kept bytes as read back, the appended ones as written.
APPEND = r"""
import hashlib, os, sys
path, offset = sys.argv[1], int(sys.argv[2])
h = hashlib.sha256()
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
if os.fstat(fd).st_size < offset:
    sys.exit(3)
kept = 0
while kept < offset:
    chunk = os.read(fd, min(1 << 20, offset - kept))
    if not chunk:
        sys.exit(3)
    h.update(chunk)
    kept += len(chunk)
os.ftruncate(fd, offset)
os.lseek(fd, offset, 0)
source = sys.stdin.buffer.raw
buf = bytearray(1 << 20)
view = memoryview(buf)
while True:
    n = source.readinto(buf)
    if not n:
        break
    done = 0
    while done < n:
        done += os.write(fd, view[done:n])
    h.update(view[:n])
os.close(fd)
sys.stdout.write("cutover-sha256 %s\n" % h.hexdigest())
"""

# sh -c APPEND_SH NAME PATH OFFSET PREFER_PYTHON: the same with coreutils when there is no
# python3: append with cat, then hash the whole file as it is on disk.
APPEND_SH = (  # %-formatting: the shell script is full of braces (ruff UP031 is off for this file)
    r"""f=$1; off=$2
if [ "$3" = 1 ] && command -v python3 >/dev/null 2>&1; then exec python3 -c "$4" "$f" "$off"; fi
[ -e "$f" ] || : > "$f" || exit 125
[ "$(wc -c < "$f")" -ge "$off" ] || exit 3
truncate -s "$off" "$f" || exit 125
cat >> "$f" || exit 1
s=$( { %s; } < "$f") || exit 1
printf 'cutover-sha256 %%s\n' "${s%%%% *}"
"""
    % SHA256_STDIN
)


def mark_in(line: str) -> tuple[str, str | None]:
    """Split a line ending in ``cutover-sha256 HEX`` into what came before it and the
    mark's value (the digest, or ``"-"``: the hasher printed none); a line without the
    mark is returned whole, with None."""
    match = _MARK_LINE.search(line)
    if match is None:
        return line, None
    return line[: match.start()], match.group(1)


def digest_of(output: str) -> str | None:
    """The hex digest that starts the output of :data:`SHA256_STDIN`, or None."""
    words = output.split()
    if not words or not re.fullmatch(r"[0-9a-fA-F]{64}", words[0]):
        return None
    return words[0].lower()


def append_command(path: str, offset: int, *, prefer_python: bool = True) -> str:
    """The command line that keeps the first ``offset`` bytes of the remote ``path``, appends
    its stdin and prints ``cutover-sha256 HEX`` of the whole file on stdout (exit 3: the
    file is shorter than ``offset``)."""
    return "sh -c " + shlex.join([APPEND_SH, "cutover-append", path, str(int(offset)), "1" if prefer_python else "0", APPEND])


def file_sha256(client: paramiko.SSHClient, path: str, limit: int | None = None) -> str | None:
    """The sha256 of the remote file (or of its first ``limit`` bytes), computed on the
    remote host; None when it cannot be read."""
    quoted = shlex.quote(path)
    if limit is None:
        # A failing redirection fails the whole command: an unreadable file is never the hash of nothing.
        command = f"{{ {SHA256_STDIN}; }} < {quoted}"
    else:
        command = f"test -f {quoted} && test -r {quoted} && head -c {int(limit)} < {quoted} | {{ {SHA256_STDIN}; }}"
    outcome = remote_process.execute(client, command, timeout_s=HASH_TIMEOUT_S, label="sha256")
    if outcome.exit_status != 0:
        return None
    return digest_of(outcome.stdout_tail)
