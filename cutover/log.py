"""One structlog configuration for every entry point (CLI, flow start, status page).

Modules only do ``log = structlog.get_logger()`` and log snake_case events with fields;
the entry point calls :func:`configure_logging` once. After that, every line, whether it
comes from structlog or from another library through the standard ``logging`` module
(prefect, paramiko, httpx, uvicorn), passes through the same processors and reaches:

* the **audit file** (optional): JSON lines, appended, one object per line, with
  ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` and the bound context
  (``cutover``, ``step_id``, ``flow_run_id``, ``task_run_id``, event fields);
* the **console** (stderr): structlog's ``ConsoleRenderer``, without colours when stderr
  is not a terminal, ``CI`` is set or ``NO_COLOR`` is set;
* the **Prefect run logs**: inside a flow or task run, each line is also sent to the
  run's logs in the Prefect UI through Prefect's own ``APILogHandler`` (the handler
  ``get_run_logger()`` loggers use), rendered like the console without colours.

Secrets never reach a sink: :func:`cutover.redaction.redact_event` runs before every
renderer, on structlog events and on records from other libraries alike (their message is
%-formatted first, their traceback rendered to text first). Records that Prefect sends to
its API by itself (``prefect.flow_runs``/``prefect.task_runs`` loggers, e.g. a failed
task's traceback) get the same redaction through a ``logging.Filter``.

This module must not import Prefect: ``cutover validate`` and ``cutover plan`` start
without it. Prefect is looked at only through ``sys.modules``: if it has not been
imported, there is no run to log to.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import structlog

from cutover.config import library_log_levels
from cutover.redaction import (
    exception_text,
    forget_secrets,
    redact_event,
    redact_text,
    register_secret,
    register_secrets,
)

__all__ = [
    "audit_file",
    "bind_step",
    "configure_logging",
    "forget_secrets",
    "redact_text",
    "register_secret",
    "reset_logging",
]

EventDict = MutableMapping[str, Any]

# Libraries whose INFO lines are noise at our default level. httpx in particular logs
# every request Prefect's own client makes to the API ("HTTP Request: POST .../logs/").

# Loggers that Prefect's logging.yml points at its own console handler with
# propagate=False; in our process they go through our sinks instead.
_ADOPTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "fastapi")
# Records from these loggers are never forwarded to the Prefect API by us: Prefect routes
# its own run loggers itself, its internal loggers are not meant for the UI, and httpx
# lines would feed back (sending a log line to the API makes an httpx request).
_NOT_FORWARDED_PREFIXES = ("prefect", "httpx", "httpcore")
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
_FILE_KEY_ORDER = ("timestamp", "level", "logger", "event")
# Fields the Prefect UI shows in its own columns, left out of the message sent there.
_UI_OMITTED = ("timestamp", "level", "logger", "flow_run_id", "task_run_id")


# --- processors (plain callables over event dicts) --------------------------------------


def _prefect_run_ids() -> dict[str, str]:
    """The ids of the Prefect flow/task run active in this context, or {} without
    importing Prefect (no prefect module loaded means no run)."""
    context = sys.modules.get("prefect.context")
    if context is None:
        return {}
    ids: dict[str, str] = {}
    try:
        task_ctx = context.TaskRunContext.get()
        flow_ctx = context.FlowRunContext.get()
    except Exception:  # a half-imported prefect during start-up
        return {}
    if task_ctx is not None and getattr(task_ctx, "task_run", None) is not None:
        ids["task_run_id"] = str(task_ctx.task_run.id)
        if task_ctx.task_run.flow_run_id:
            ids["flow_run_id"] = str(task_ctx.task_run.flow_run_id)
    if flow_ctx is not None and getattr(flow_ctx, "flow_run", None) is not None:
        ids.setdefault("flow_run_id", str(flow_ctx.flow_run.id))
    return ids


def add_run_ids(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: add ``flow_run_id``/``task_run_id`` of the active Prefect run
    (fields already present win). Also makes sure Prefect's own API-bound records are
    redacted once a run is seen, in case Prefect configured its logging after us."""
    ids = _prefect_run_ids()
    if ids:
        _guard_prefect_api_handlers(once=True)
        for key, value in ids.items():
            event_dict.setdefault(key, value)
    return event_dict


def add_record_timestamp(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor for records from other libraries: the time the record was
    created (ISO 8601, UTC, like structlog's own lines), so that the audit file, the
    console and the Prefect UI agree on it."""
    record = event_dict.get("_record")
    if record is not None:
        stamp = datetime.fromtimestamp(record.created, tz=UTC).isoformat()
        event_dict["timestamp"] = stamp.replace("+00:00", "Z")
    return event_dict


def add_record_exception(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor for records from other libraries: a record whose traceback was
    already rendered (``exc_text``, e.g. by our redacting filter) keeps it as
    ``exception``."""
    record = event_dict.get("_record")
    if record is not None and "exc_info" not in event_dict and "exception" not in event_dict:
        exc_text = getattr(record, "exc_text", None)
        if exc_text:
            event_dict["exception"] = exc_text
    return event_dict


def order_file_keys(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: put timestamp, level, logger and event first, so that the
    audit file reads the same on every line."""
    ordered: dict[str, Any] = {k: event_dict[k] for k in _FILE_KEY_ORDER if k in event_dict}
    ordered.update((k, v) for k, v in event_dict.items() if k not in ordered)
    return ordered


def drop_ui_columns(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: drop the fields the Prefect UI already shows in columns."""
    for key in _UI_OMITTED:
        event_dict.pop(key, None)
    return event_dict


def _json_default(value: Any) -> str:
    return redact_text(str(value))


# --- handlers and filters ---------------------------------------------------------------


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of the
    record, so that a redirected stderr (pytest's capture, a daemonised process) gets the
    line instead of a stream that was closed since configuration.

    The class name has no leading underscore on purpose: Prefect's logging set-up keeps
    its own console handler off the root logger when the root already has a user handler,
    and it does not count handlers whose class name starts with ``_``."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__/setStream assign it
        pass


class RedactingRecordFilter(logging.Filter):
    """Redacts a ``logging.LogRecord`` in place: the message is %-formatted and redacted,
    the traceback rendered to redacted text (``exc_text``). Used where records leave the
    process without passing through our formatters (Prefect's own API handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, dict):  # structlog events are redacted already
            try:
                message = record.getMessage()
            except Exception:
                message = str(record.msg)
            record.msg = redact_text(message)
            record.args = None
        if record.exc_info:
            text = exception_text(record.exc_info)
            record.exc_info = None
            record.exc_text = redact_text(text) if text else None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


class PrefectRunLogHandler(logging.Handler):
    """Sends each record logged inside a Prefect flow or task run to that run's logs (the
    Prefect UI), formatted by this handler's formatter (redacted, plain text).

    Outside a run, and in any process where Prefect was never imported, it does nothing.
    Records that Prefect already sends to its API (its run loggers and any logger under
    an ``APILogHandler``, e.g. ``PREFECT_LOGGING_EXTRA_LOGGERS``) are skipped, so no line
    appears twice in the UI; the console and the audit file are separate handlers, so this
    one never adds a console line."""

    def __init__(self) -> None:
        super().__init__()
        self._api: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if "prefect.context" not in sys.modules or not _prefect_run_ids():
            return
        try:
            # Before the skip below: the first record of a run is usually Prefect's own,
            # and it is the one that tells us Prefect's handlers exist by now.
            _guard_prefect_api_handlers(once=True)
            if record.name.split(".", 1)[0] in _NOT_FORWARDED_PREFIXES:
                return
            if _sent_to_prefect_api_by_prefect(record.name):
                return
            self._api_handler().handle(record)
        except Exception:
            self.handleError(record)

    def _api_handler(self) -> logging.Handler:
        if self._api is None:
            from prefect.logging.handlers import APILogHandler

            api = APILogHandler()
            api.setFormatter(self.formatter)
            self._api = api
        return self._api

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        super().setFormatter(fmt)
        if self._api is not None:
            self._api.setFormatter(fmt)

    def flush(self) -> None:
        """Block until the lines sent so far have reached the Prefect API (at most a few
        seconds). A no-op when nothing was sent."""
        if self._api is not None:
            self._api.flush()


def _is_prefect_api_handler(handler: logging.Handler) -> bool:
    handlers = sys.modules.get("prefect.logging.handlers")
    return handlers is not None and isinstance(handler, handlers.APILogHandler)


def _sent_to_prefect_api_by_prefect(name: str) -> bool:
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        if any(_is_prefect_api_handler(h) for h in logger.handlers):
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


_REDACTING_FILTER = RedactingRecordFilter()
_prefect_guarded = False


def _guard_prefect_api_handlers(*, once: bool = False) -> None:
    """Attach the redacting filter where Prefect sends records to its API by itself: its
    run loggers (logger filters survive Prefect re-running its dictConfig) and every
    ``APILogHandler`` attached to a logger (extra loggers)."""
    global _prefect_guarded
    if once and _prefect_guarded:
        return
    if "prefect.logging.handlers" not in sys.modules:
        return
    for name in _RUN_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTING_FILTER not in logger.filters:
            logger.addFilter(_REDACTING_FILTER)
    loggers = [logging.getLogger()] + [
        lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if _is_prefect_api_handler(handler) and _REDACTING_FILTER not in handler.filters:
                handler.addFilter(_REDACTING_FILTER)
    _prefect_guarded = True


# --- configuration ----------------------------------------------------------------------

_SINK_MARK = "_cutover_sink"
_audit_path: Path | None = None


def _use_colors() -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _shared_processors() -> list[Any]:
    """What every line goes through before a renderer, whether it comes from structlog or
    from another library's ``logging`` call."""
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        add_run_ids,
    ]


def _formatter(renderer: Any, *extra: Any) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        # Library lines get the bound context too (step_id on a paramiko line), when they
        # are logged from the thread that bound it.
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            *_shared_processors(),
            add_record_timestamp,
            add_record_exception,
            redact_event,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *extra, renderer],
    )


def _mark(handler: logging.Handler) -> logging.Handler:
    setattr(handler, _SINK_MARK, True)
    return handler


def _remove_sinks(root: logging.Logger) -> None:
    for handler in list(root.handlers):
        if getattr(handler, _SINK_MARK, False) or type(handler).__name__ == "PrefectConsoleHandler":
            root.removeHandler(handler)
            if getattr(handler, _SINK_MARK, False):
                handler.close()


def configure_logging(
    *,
    audit_file: Path | None = None,
    console: bool = True,
    level: int | str = "INFO",
    secrets: Iterable[str] = (),
    library_levels: dict[str, int | str] | None = None,
) -> None:
    """Configure structlog and the standard ``logging`` module for this process.

    Call it once per entry point; calling it again replaces the previous configuration
    (sinks are swapped, never added twice; the previous audit file is closed). ``secrets``
    are registered for redaction (see :func:`register_secret`; registrations accumulate
    for the life of the process). ``audit_file`` is opened for appending, its directory
    created. ``level`` applies to the root logger; ``library_levels`` overrides the level
    of named library loggers (by default httpx and httpcore log at WARNING, because their
    INFO lines are one per HTTP request, including Prefect's own API calls).

    Handlers that others put on the root logger stay (pytest's capture, for example),
    except Prefect's console handler, which would print every line a second time.
    """
    register_secrets(secrets)
    global _prefect_guarded
    _prefect_guarded = False

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            redact_event,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: modules bind their logger at import time, and a later
        # configure_logging() must still reach them.
        cache_logger_on_first_use=False,
    )

    root = logging.getLogger()
    _remove_sinks(root)
    root.setLevel(level if isinstance(level, int) else level.upper())

    plain_renderer = structlog.dev.ConsoleRenderer(
        colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
    )
    global _audit_path
    _audit_path = None
    if audit_file is not None:
        path = Path(audit_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        _only_for_this_user(path)
        file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        _audit_path = path
        file_handler.setFormatter(_formatter(structlog.processors.JSONRenderer(default=_json_default), order_file_keys))
        root.addHandler(_mark(file_handler))
    if console:
        console_handler = StderrHandler()
        console_handler.setFormatter(
            _formatter(structlog.dev.ConsoleRenderer(colors=_use_colors(), exception_formatter=structlog.dev.plain_traceback))
        )
        root.addHandler(_mark(console_handler))
    prefect_handler = PrefectRunLogHandler()
    prefect_handler.setFormatter(_formatter(plain_renderer, drop_ui_columns))
    root.addHandler(_mark(prefect_handler))

    for name, lib_level in {**library_log_levels(), **(library_levels or {})}.items():
        logging.getLogger(name).setLevel(lib_level if isinstance(lib_level, int) else lib_level.upper())
    for name in _ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        for handler in list(adopted.handlers):
            adopted.removeHandler(handler)
        adopted.propagate = True

    _guard_prefect_api_handlers()


def _only_for_this_user(path: Path) -> None:
    """Create the audit file 0600, or make an existing one so: it names hosts, databases and
    people, and the machine may have other users."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(path, 0o600)


def audit_file() -> Path | None:
    """The audit file of the last :func:`configure_logging` in this process, if it had one
    (what the end of a run keeps in Prefect, see cutover.audit)."""
    return _audit_path


def reset_logging() -> None:
    """Remove the sinks :func:`configure_logging` installed (closing the audit file after
    flushing what was sent to Prefect) and restore structlog's defaults. For tests, and for
    an entry point that wants its audit file closed before it exits."""
    global _audit_path
    _audit_path = None
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _SINK_MARK, False):
            handler.flush()
            root.removeHandler(handler)
            handler.close()
    structlog.reset_defaults()


def flush_logging() -> None:
    """Block until every line logged so far has been written by every sink, including the
    Prefect API (bounded by Prefect's own flush timeout)."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, _SINK_MARK, False):
            handler.flush()


@contextmanager
def bind_step(cutover: str, step_id: str | None = None, **fields: Any) -> Iterator[None]:
    """Bind ``cutover`` (and ``step_id`` and any other run-scoped ``fields``) to every line
    logged in this context, threads and tasks started from it included; the previous
    bindings come back on exit."""
    bound: dict[str, Any] = {"cutover": cutover, **fields}
    if step_id is not None:
        bound["step_id"] = step_id
    with structlog.contextvars.bound_contextvars(**bound):
        yield
