"""Around every step: bound log context, timing, and a Prefect event per transition.

Events are ``cutover.step.started|completed|compensated|failed`` on resource ``cutover.<cutover>.<step id>``
with the step's figures (duration, bytes, rows, checksums) in the payload; the status page
and automations listen to them. It lives beside the tasks because it imports Prefect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any, TypeVar

import structlog
from prefect.events import emit_event

from cutover.event_names import STEP_FAILED, STEP_PREFIX, STEP_STARTED, step_resource
from cutover.log import bind_step, redact_text
from cutover.results import StepResult

log = structlog.get_logger()

T = TypeVar("T")


def _figures(result: Any) -> dict[str, Any]:
    return result.figures() if isinstance(result, StepResult) else {}


def emit(cutover: str, event: str, resource_name: str, payload: dict[str, Any] | None = None, **labels: str) -> None:
    """Emit ``event`` about ``resource_name`` (a step id, ``gate/<name>``, ``point-of-no-return``)
    of ``cutover``, on the same resource as that step's own events."""
    resource = {
        "prefect.resource.id": f"cutover.{cutover}.{resource_name}",
        "prefect.resource.name": resource_name,
        "cutover.name": cutover,
        **{f"cutover.{k}": v for k, v in labels.items()},
    }
    emit_event(event, resource=resource, payload=_plain(payload or {}))


def _plain(value: Any) -> Any:
    """Event payloads are JSON: dataclasses (results, DNS changes) become dicts."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def run_step(cutover: str, step_id: str, phase: str, work: Callable[[], T], *, done: str = "completed") -> T:
    """Run ``work`` as step ``step_id``: log and emit its start, then its end (event
    ``cutover.step.<done>``: ``completed``, or ``compensated`` for a rollback step) or failure."""
    resource = step_resource(cutover, step_id, phase)
    with bind_step(cutover, step_id):
        log.info("step_started", phase=phase)
        emit_event(STEP_STARTED, resource=resource)
        start = time.perf_counter()
        try:
            result = work()
        except BaseException as exc:
            duration = round(time.perf_counter() - start, 2)
            message = redact_text(str(exc))[:500]
            log.error("step_failed", phase=phase, duration_s=duration, error=message, error_type=type(exc).__name__)
            emit_event(STEP_FAILED, resource=resource, payload={"duration_s": duration, "error": message})
            raise
        duration = round(time.perf_counter() - start, 2)
        figures = {"duration_s": duration, **{k: v for k, v in _figures(result).items() if k != "duration_s"}}
        log.info(f"step_{done}", phase=phase, **figures)
        emit_event(f"{STEP_PREFIX}{done}", resource=resource, payload=_plain(figures))
        return result
