"""``cutover sandbox up|status|down|reset``: the local estate the demo and the tests run against.

Errors are one line on stderr (what failed and where) and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cutover.errors import SandboxError

if TYPE_CHECKING:
    from cutover.sandbox.lifecycle import ServiceState

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

DirOption = Annotated[Path, typer.Option("--dir", help="the sandbox directory", show_default=True)]
DEFAULT_DIR = Path(".sandbox")


def _fail(command: str, exc: Exception) -> typer.Exit:
    print(f"cutover sandbox {command}: {exc}", file=sys.stderr)
    return typer.Exit(1)


def _print_states(states: Sequence[ServiceState]) -> None:
    width = max(len(s.name) for s in states)
    for s in states:
        pid = f"pid {s.pid}" if s.pid else "no pid"
        detail = f"  ({s.detail})" if s.detail else ""
        print(f"{s.name:<{width}}  {'up' if s.up else 'DOWN':<4}  {s.address}  {pid}{detail}")


@app.command()
def up(
    scale: Annotated[
        int | None,
        typer.Option("--scale", min=0, help="estate size: 1 is about 50 MB, 20 about 1 GB (default: 1, or the recorded one)"),
    ] = None,
    directory: DirOption = DEFAULT_DIR,
) -> None:
    """Start (or reuse) the sandbox: two PostgreSQL clusters, sshd, PowerDNS, the applications."""
    from cutover.sandbox import lifecycle

    try:
        info = lifecycle.up(directory, scale)
        states = lifecycle.status(directory)
    except (SandboxError, OSError) as exc:  # OSError: a file or directory we could not use
        raise _fail("up", exc) from None
    _print_states(states)
    print(f"sandbox in {info.dir} (scale {info.scale}); environment: source {Path(info.dir) / 'env'}")
    if not all(s.up for s in states):
        raise typer.Exit(1)


@app.command()
def status(directory: DirOption = DEFAULT_DIR) -> None:
    """Show every service with its address; exit 1 if any is down."""
    from cutover.sandbox import lifecycle

    try:
        states = lifecycle.status(directory)
    except (SandboxError, OSError) as exc:  # OSError: a file or directory we could not use
        raise _fail("status", exc) from None
    _print_states(states)
    if not all(s.up for s in states):
        raise typer.Exit(1)


@app.command()
def down(
    directory: DirOption = DEFAULT_DIR,
    purge: Annotated[bool, typer.Option("--purge", help="also delete the sandbox's data, keys and config")] = False,
) -> None:
    """Stop exactly the processes the sandbox started, and confirm none is left."""
    from cutover.sandbox import lifecycle

    try:
        stopped = lifecycle.down(directory, purge=purge)
    except (SandboxError, OSError) as exc:  # OSError: a file or directory we could not use
        raise _fail("down", exc) from None
    print(f"sandbox in {directory.absolute()}: stopped {len(stopped)} processes{', purged' if purge else ''}")


@app.command()
def reset(directory: DirOption = DEFAULT_DIR) -> None:
    """Put a running sandbox back to before the cutover (cloud empty, DNS and apps at the old site)."""
    import httpx
    import psycopg

    from cutover.sandbox import lifecycle
    from cutover.sandbox.reset import reset as reset_estate

    try:
        reset_estate(lifecycle.load(directory))
    except SandboxError as exc:
        raise _fail("reset", exc) from None
    except (psycopg.Error, httpx.HTTPError) as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise _fail("reset", SandboxError(f"{type(exc).__name__}: {first_line}")) from None
    print(f"sandbox in {directory.absolute()}: reset")
