"""``cutover sandbox`` errors are one line naming what and where, with a non-zero exit and
no traceback, and never show a secret."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cutover.cli.main import app
from tests.unit.test_sandbox_processes import fake_sandbox

runner = CliRunner()


def test_status_without_a_sandbox_is_a_one_line_error(tmp_path: Path):
    result = runner.invoke(app, ["sandbox", "status", "--dir", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"cutover sandbox status: no sandbox in {tmp_path / 'missing'}")
    assert "Traceback" not in result.output + result.stderr


def test_status_of_an_unreadable_description_names_the_file(tmp_path: Path):
    (tmp_path / "sandbox.json").write_text(json.dumps({"dir": str(tmp_path)}))
    result = runner.invoke(app, ["sandbox", "status", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert str(tmp_path / "sandbox.json") in result.stderr and "Traceback" not in result.stderr


def test_status_of_a_stopped_sandbox_lists_every_service_down_without_secrets(tmp_path: Path):
    fake_sandbox(tmp_path, pid=999_999_999)
    result = runner.invoke(app, ["sandbox", "status", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["postgres@onprem", "DOWN"],
        ["postgres@cloud", "DOWN"],
        ["sshd", "DOWN"],
        ["powerdns", "DOWN"],
        ["gis@onprem", "DOWN"],
        ["gis@cloud", "DOWN"],
    ]
    assert "secret" not in result.stdout + result.stderr


def test_up_refuses_a_scale_other_than_the_recorded_one(tmp_path: Path):
    fake_sandbox(tmp_path, pid=999_999_999)
    result = runner.invoke(app, ["sandbox", "up", "--scale", "3", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "built at scale 1, not 3" in result.stderr and "Traceback" not in result.stderr


def test_up_refuses_a_negative_scale(tmp_path: Path):
    result = runner.invoke(app, ["sandbox", "up", "--scale", "-1", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert not (tmp_path / "sandbox.json").exists()


def test_down_without_a_sandbox_succeeds_with_nothing_to_stop(tmp_path: Path):
    result = runner.invoke(app, ["sandbox", "down", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "stopped 0 processes" in result.stdout


def test_up_in_a_directory_that_cannot_exist_is_a_one_line_error(tmp_path: Path):
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "sandbox"
    result = runner.invoke(app, ["sandbox", "up", "--scale", "0", "--dir", str(target)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"cutover sandbox up: cannot create the sandbox in {target}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
