"""A run's local directory on a machine where the state directory's parents do not exist yet."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cutover.phases import workspace


def test_run_dir_on_a_fresh_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As on a fresh machine: no ~/.local/state yet, no CUTOVER_HOME, no CUTOVER_WORK_DIR.
    monkeypatch.delenv("CUTOVER_HOME", raising=False)
    monkeypatch.delenv("CUTOVER_WORK_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()

    path = workspace.run_dir("gemeente-werkendam", "run-1")

    assert path == tmp_path / "home" / ".local" / "state" / "cutover" / "work" / "gemeente-werkendam" / "run-1"
    for level in (path, path.parent, path.parent.parent):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level
    # A second call (a retry) finds the same directory.
    assert workspace.run_dir("gemeente-werkendam", "run-1") == path
