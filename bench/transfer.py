"""Benchmark: moving one file to the cloud host of the sandbox, the project's way and the
plain way, over the same sshd.

Compared, interleaved, on the same incompressible file (1 GiB by default):

- ``upload``: :func:`cutover.ssh.upload.upload_file` (resumable, sha256 on both ends),
  a new SSH connection included, against ``scp`` of the same file;
- ``stream``: :func:`cutover.ssh.stream.stream_to_remote` into ``cat > FILE`` (sha256 on
  both ends), a new connection included, against ``ssh HOST 'cat > FILE' < file``.

The remote copy is removed before each run (untimed). The file is read from the page
cache by every command alike (it is read once before the first run).

    .venv/bin/cutover sandbox up --dir .sandbox-bench
    .venv/bin/python bench/transfer.py --dir .sandbox-bench [--runs 3] [--mib 1024]
"""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile
from pathlib import Path

import measure
import sandbox_tools

from cutover.ssh.remote import run_remote
from cutover.ssh.stream import stream_to_remote
from cutover.ssh.target import connect
from cutover.ssh.upload import upload_file


def test_file(directory: Path, mib: int) -> Path:
    """An incompressible file of ``mib`` MiB, made once and kept for later runs."""
    path = directory / f"transfer-{mib}mib.bin"
    if not path.exists() or path.stat().st_size != mib * 2**20:
        with open(path.with_suffix(".tmp"), "wb") as out:
            for _ in range(mib):
                out.write(os.urandom(2**20))
        path.with_suffix(".tmp").replace(path)
    with open(path, "rb") as warm:  # into the page cache, for every command alike
        while warm.read(2**24):
            pass
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".sandbox-bench", help="the sandbox directory")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB")
    parser.add_argument(
        "--max-load", type=float, default=None, help="wait for the 1-minute load to drop below this before each run"
    )
    parser.add_argument("--only", choices=("upload", "stream"), default=None)
    args = parser.parse_args()
    measure.quiet_logs()

    info = sandbox_tools.load(args.dir)
    target = sandbox_tools.ssh_target(info)
    scratch = Path(info.dir) / "bench"
    scratch.mkdir(exist_ok=True)
    local = test_file(scratch, args.mib)
    size = local.stat().st_size
    remote_dir = f"{info.ssh.work_dir}/bench-transfer"
    remote = f"{remote_dir}/file.bin"
    login = f"{info.ssh.user}@{info.ssh.host}"

    with tempfile.TemporaryDirectory() as tmp:
        options = sandbox_tools.openssh_options(info, Path(tmp))

        def upload() -> dict[str, object]:
            with connect(target) as client:
                result = upload_file(client, local, remote)
            assert result.bytes_sent == size, result
            return {"sha256": result.sha256}

        def scp() -> None:
            measure.run_command(["scp", "-q", "-P", str(info.ssh.port), *options, str(local), f"{login}:{remote}"])

        def stream() -> dict[str, object]:
            with connect(target) as client, open(local, "rb") as source:
                # the size hint a phase gives (the database size it measured)
                result = stream_to_remote(client, source, f"cat > {shlex.quote(remote)}", expected_bytes=size)
            assert result.exit_status == 0 and result.bytes == size, result
            return {"sha256": result.sha256_local}

        def ssh_cat() -> None:
            measure.run_command(
                ["ssh", "-p", str(info.ssh.port), *options, login, f"cat > {shlex.quote(remote)}"], stdin=str(local)
            )

        with connect(target) as admin:
            run_remote(admin, f"mkdir -p {shlex.quote(remote_dir)}", timeout_s=30)

            def prepare(_name: str) -> None:
                run_remote(admin, f"rm -f {shlex.quote(remote)} {shlex.quote(remote)}.part", timeout_s=30)

            commands: dict[str, measure.Timed] = {}
            ratios = []
            if args.only in (None, "upload"):
                commands |= {"upload (project)": upload, "scp": scp}
                ratios.append(("scp", "upload (project)"))
            if args.only in (None, "stream"):
                commands |= {"stream (project)": stream, "ssh cat": ssh_cat}
                ratios.append(("ssh cat", "stream (project)"))
            meter = measure.CpuMeter(remote_parent=info.ssh.pid)

            def prepare_and_meter(name: str) -> None:
                prepare(name)
                meter.start()

            series = measure.interleave(
                commands, runs=args.runs, prepare=prepare_and_meter, after=lambda _name: meter.stop(), max_load=args.max_load
            )
            prepare("")
            run_remote(admin, f"rm -rf {shlex.quote(remote_dir)}", timeout_s=30)
    print("\n(a ratio scp / upload of 0.95 or more is the target: the project's path at 95% of scp's speed or better)")
    measure.report(
        "transfer",
        series,
        ratios,
        rate_bytes=size,
        notes={"file_bytes": size, "sandbox_dir": info.dir, "ratio_reading": "plain tool median / project median: 1.0 = as fast"},
    )


if __name__ == "__main__":
    main()
