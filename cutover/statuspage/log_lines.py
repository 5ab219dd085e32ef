"""A run's log records from the Prefect API, as structured lines for the team view.

Cutover's own lines reach Prefect rendered as ``event key=value ...`` (see
:mod:`cutover.log`); they are split back into the event and its fields. The step (and so
the application) comes from a ``step_id`` field, else from the task run the record
belongs to. Every text is redacted again here: registered secrets and password-looking
fragments (:mod:`cutover.redaction`), whatever the sender did.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from cutover.redaction import redact_text

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_EVENT = re.compile(r"^([a-z][a-z0-9_]*)(?:\s+|$)")
_FIELD = re.compile(r"""(?:^|\s)([A-Za-z_][\w.-]*)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")
MAX_TEXT = 2000


@dataclass(frozen=True)
class LogLine:
    id: str
    timestamp: str
    level: str  # debug, info, warning, error
    level_no: int
    logger: str
    text: str
    event: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    step_id: str | None = None
    application: str | None = None
    flow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "timestamp": self.timestamp,
            "level": self.level,
            "logger": self.logger,
            "event": self.event,
            "fields": self.fields,
            "text": self.text,
            "step_id": self.step_id,
            "application": self.application,
        }


def level_name(number: int) -> str:
    if number >= logging.ERROR:
        return "error"
    if number >= logging.WARNING:
        return "warning"
    if number >= logging.INFO:
        return "info"
    return "debug"


def application_of(step_id: str | None) -> str | None:
    if not step_id:
        return None
    parts = step_id.split("/")
    if parts[0] == "rollback" and len(parts) > 1:
        parts = parts[1:]
    return None if parts[0] in ("gate", "preflight", "point-of-no-return") else parts[0]


def parse_record(record: dict[str, Any], task_steps: dict[str, str]) -> LogLine:
    """One Prefect log record (the API's JSON) as a redacted :class:`LogLine`;
    ``task_steps`` maps task run ids to step ids."""
    message = redact_text(str(record.get("message") or ""))[:MAX_TEXT]
    first_line = message.split("\n", 1)[0]
    event = None
    fields: dict[str, str] = {}
    match = _EVENT.match(first_line)
    if match and ("=" in first_line or first_line.strip() == match.group(1)):
        event = match.group(1)
        fields = {k: v.strip("'\"") for k, v in _FIELD.findall(first_line[match.end() :])}
    step_id = fields.get("step_id") or task_steps.get(str(record.get("task_run_id") or ""))
    number = int(record.get("level") or logging.INFO)
    return LogLine(
        id=str(record.get("id")),
        timestamp=str(record.get("timestamp")),
        level=level_name(number),
        level_no=number,
        logger=str(record.get("name") or ""),
        text=message,
        event=event,
        fields=fields,
        step_id=step_id,
        application=application_of(step_id),
        flow_run_id=str(record.get("flow_run_id") or "") or None,
    )


def matches(line: LogLine, application: str | None, level: str | None) -> bool:
    """The team view's filter: an application (empty: all) and a lowest level."""
    if application and line.application != application:
        return False
    return not level or line.level_no >= LEVELS.get(level, 0)
