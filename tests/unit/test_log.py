"""The logging configuration end to end, without Prefect: every sink gets one shape and
no secret, from structlog and from other libraries alike."""

from __future__ import annotations

import http.server
import json
import logging
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime

import httpx
import pytest
import structlog

from cutover.log import (
    RedactingRecordFilter,
    add_record_exception,
    add_run_ids,
    bind_step,
    configure_logging,
    drop_ui_columns,
    order_file_keys,
    reset_logging,
)
from cutover.redaction import REDACTED, forget_secrets, register_secret

SECRET = "s3cr3t-Pa55word!"
log = structlog.get_logger()


@pytest.fixture(autouse=True)
def clean_logging():
    forget_secrets()
    yield
    reset_logging()
    forget_secrets()


def read_audit(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_audit_file_has_one_json_object_per_line_with_timestamp_level_logger_event_and_context(tmp_path):
    audit = tmp_path / "runs" / "r1" / "audit.jsonl"
    configure_logging(audit_file=audit, console=False)
    with bind_step("gemeente-werkendam", "burgerzaken/export/bzk"):
        log.info("upload_resumed", offset=1024, total=4096)
    log.warning("window_tight", minutes_left=12)

    first, second = read_audit(audit)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["event"] == "upload_resumed"
    assert first["level"] == "info"
    assert first["logger"] == __name__
    assert first["cutover"] == "gemeente-werkendam"
    assert first["step_id"] == "burgerzaken/export/bzk"
    assert (first["offset"], first["total"]) == (1024, 4096)
    stamp = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    # bindings end with the context
    assert second["event"] == "window_tight" and "step_id" not in second


def test_audit_file_is_appended_to_not_truncated(tmp_path):
    audit = tmp_path / "audit.jsonl"
    configure_logging(audit_file=audit, console=False)
    log.info("first_process")
    reset_logging()
    configure_logging(audit_file=audit, console=False)
    log.info("second_process")
    assert [e["event"] for e in read_audit(audit)] == ["first_process", "second_process"]


def test_configuring_again_does_not_duplicate_lines(tmp_path, capsys):
    audit = tmp_path / "audit.jsonl"
    configure_logging(audit_file=audit)
    configure_logging(audit_file=audit)
    configure_logging(audit_file=audit)
    log.info("once_only")
    logging.getLogger("paramiko.transport").info("foreign once")
    err = capsys.readouterr().err
    assert err.count("once_only") == 1
    assert err.count("foreign once") == 1
    assert [e["event"] for e in read_audit(audit)] == ["once_only", "foreign once"]
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_cutover_sink", False)]
    assert len(ours) == 3  # audit file, console, Prefect run logs


def test_level_filters_structlog_and_library_lines(tmp_path):
    audit = tmp_path / "audit.jsonl"
    configure_logging(audit_file=audit, console=False, level="WARNING")
    log.info("too_chatty")
    logging.getLogger("paramiko.transport").info("also chatty")
    log.error("kept")
    assert [e["event"] for e in read_audit(audit)] == ["kept"]


def test_console_is_readable_and_has_no_colours_in_ci(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CI", "true")
    configure_logging()
    with bind_step("gemeente-werkendam", "gis/import/geo"):
        log.info("restore_done", rows=12)
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "restore_done" in line)
    assert "\x1b[" not in err
    assert "[info" in line and "rows=12" in line and "step_id=gis/import/geo" in line
    assert not line.lstrip().startswith("{")  # readable, not JSON


def test_library_records_get_the_same_shape_as_structlog_events(tmp_path):
    audit = tmp_path / "audit.jsonl"
    configure_logging(audit_file=audit, console=False)
    with bind_step("gemeente-urk", "portal/transfer/files"):
        logging.getLogger("paramiko.transport").info("Connected (version %s, client %s)", "2.0", "OpenSSH_9.2")
    (line,) = read_audit(audit)
    assert line["logger"] == "paramiko.transport"
    assert line["level"] == "info"
    assert line["event"] == "Connected (version 2.0, client OpenSSH_9.2)"
    assert line["step_id"] == "portal/transfer/files"  # contextvars reach library lines too
    assert set(["timestamp", "level", "logger", "event"]) <= set(line)


def test_registered_secret_never_reaches_the_audit_file_or_the_console(tmp_path, capsys):
    audit = tmp_path / "audit.jsonl"
    configure_logging(audit_file=audit, secrets=[SECRET])
    log.info("connecting", dsn=f"postgresql://migrate:{SECRET}@127.0.0.1:5432/bzk", note=f"pw {SECRET}", password=SECRET)
    log.info("argv", argv=["pg_dump", f"--password={SECRET}"], env={"PGPASSWORD": SECRET})
    log.info("positional %s", SECRET)
    logging.getLogger("paramiko.transport").info("Auth with %s for %s", SECRET, "migrate")
    logging.getLogger("paramiko.transport").warning(f"inline {SECRET}")

    file_text = audit.read_text(encoding="utf-8")
    console = capsys.readouterr().err
    for sink in (file_text, console):
        assert SECRET not in sink
        assert sink.count(REDACTED) >= 7
    events = read_audit(audit)
    assert events[0]["dsn"] == f"postgresql://migrate:{REDACTED}@127.0.0.1:5432/bzk"
    assert events[1]["env"] == {"PGPASSWORD": REDACTED}
    assert events[3]["event"] == f"Auth with {REDACTED} for migrate"


def test_secret_in_an_exception_traceback_is_redacted_in_every_sink(tmp_path, capsys):
    audit = tmp_path / "audit.jsonl"
    configure_logging(audit_file=audit)
    register_secret(SECRET)  # registered after configuration: still applies

    def connect():
        raise ConnectionRefusedError(f"could not log in with {SECRET}")

    try:
        connect()
    except ConnectionRefusedError:
        log.exception("connect_failed", host="127.0.0.1:5432")
    try:
        connect()
    except ConnectionRefusedError:
        logging.getLogger("paramiko.transport").error("Exception: %s", SECRET, exc_info=True)

    structlog_line, library_line = read_audit(audit)
    for line in (structlog_line, library_line):
        assert "Traceback (most recent call last)" in line["exception"]
        assert f"ConnectionRefusedError: could not log in with {REDACTED}" in line["exception"]
        assert "in connect" in line["exception"]
    console = capsys.readouterr().err
    assert console.count("Traceback (most recent call last)") == 2
    assert SECRET not in audit.read_text(encoding="utf-8")
    assert SECRET not in console


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the server's own access log out of stderr
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_httpx_request_line_with_a_secret_in_the_url_is_redacted(tmp_path, capsys, http_server):
    audit = tmp_path / "audit.jsonl"
    configure_logging(audit_file=audit, secrets=[SECRET], library_levels={"httpx": "INFO"})
    with httpx.Client() as client:
        assert client.get(f"{http_server}/health", params={"token": SECRET}).status_code == 200

    (line,) = [e for e in read_audit(audit) if e["logger"] == "httpx"]
    assert line["event"].startswith("HTTP Request: GET ")
    assert "/health?token=" in line["event"] and "200 OK" in line["event"]
    assert SECRET not in json.dumps(line) and "s3cr3t" not in json.dumps(line)
    console = capsys.readouterr().err
    assert "HTTP Request: GET" in console and "s3cr3t" not in console


def test_httpx_request_lines_are_quiet_by_default(tmp_path, http_server):
    audit = tmp_path / "audit.jsonl"
    configure_logging(audit_file=audit, console=False)
    with httpx.Client() as client:
        client.get(f"{http_server}/health")
    log.info("after_request")
    assert [e["logger"] for e in read_audit(audit)] == [__name__]


def test_redacting_record_filter_rewrites_message_args_and_traceback():
    register_secret(SECRET)
    try:
        raise ValueError(SECRET)
    except ValueError:
        record = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed: %s", (SECRET,), sys.exc_info())
    assert RedactingRecordFilter().filter(record) is True
    formatted = logging.Formatter().format(record)
    assert formatted.startswith(f"failed: {REDACTED}\nTraceback")
    assert f"ValueError: {REDACTED}" in formatted
    assert SECRET not in formatted


def test_bind_step_nests_and_restores_outer_bindings(tmp_path):
    audit = tmp_path / "audit.jsonl"
    configure_logging(audit_file=audit, console=False)
    with bind_step("gemeente-werkendam"):
        log.info("flow_started")
        with bind_step("gemeente-werkendam", "gis/freeze", attempt=2):
            log.info("step_started")
        log.info("flow_continues")
    a, b, c = read_audit(audit)
    assert a["cutover"] == "gemeente-werkendam" and "step_id" not in a
    assert b["step_id"] == "gis/freeze" and b["attempt"] == 2
    assert "step_id" not in c and "attempt" not in c


def test_importing_and_configuring_logging_does_not_import_prefect(tmp_path):
    code = (
        "import sys; from cutover.log import configure_logging; import structlog;"
        f"configure_logging(audit_file=__import__('pathlib').Path({str(tmp_path / 'a.jsonl')!r}));"
        "structlog.get_logger().info('x');"
        "sys.exit(1 if any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules) else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"\bx\b", done.stderr)


def test_library_line_carries_the_time_its_record_was_created(tmp_path):
    audit = tmp_path / "audit.jsonl"
    configure_logging(audit_file=audit, console=False)
    record = logging.LogRecord("paramiko.transport", logging.INFO, __file__, 1, "late line", (), None)
    record.created = datetime(2027, 7, 16, 16, 0, 1, 250000, tzinfo=UTC).timestamp()
    logging.getLogger("paramiko.transport").handle(record)
    (line,) = read_audit(audit)
    assert line["timestamp"] == "2027-07-16T16:00:01.250000Z"


def _record_with_exc_text(text):
    record = logging.LogRecord("paramiko.transport", logging.ERROR, __file__, 1, "m", (), None)
    record.exc_text = text
    return record


_REC = _record_with_exc_text("Traceback ...\nValueError: x")


@pytest.mark.parametrize(
    ("processor", "event", "expected"),
    [
        (
            order_file_keys,
            {"rows": 1, "event": "e", "logger": "l", "level": "info", "timestamp": "t"},
            {"timestamp": "t", "level": "info", "logger": "l", "event": "e", "rows": 1},
        ),
        (order_file_keys, {"event": "e"}, {"event": "e"}),
        (
            drop_ui_columns,
            {
                "event": "e",
                "timestamp": "t",
                "level": "info",
                "logger": "l",
                "flow_run_id": "f",
                "task_run_id": "r",
                "step_id": "s",
            },
            {"event": "e", "step_id": "s"},
        ),
        (add_record_exception, {"event": "e", "_record": _REC}, {"event": "e", "_record": _REC, "exception": _REC.exc_text}),
        (
            add_record_exception,
            {"event": "e", "_record": _REC, "exc_info": True},
            {"event": "e", "_record": _REC, "exc_info": True},
        ),
        (add_record_exception, {"event": "e"}, {"event": "e"}),
        # outside a Prefect run nothing is added
        (add_run_ids, {"event": "e"}, {"event": "e"}),
    ],
)
def test_processors_over_plain_event_dicts(processor, event, expected):
    out = processor(None, "info", dict(event))
    assert out == expected
    assert list(out) == list(expected)
