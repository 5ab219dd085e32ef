"""A step's bytes on the way: a Prefect progress artifact and ``cutover.step.progress`` events."""

from __future__ import annotations

import contextvars
import time
from typing import Any

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.events import emit_event

from cutover.event_names import STEP_PROGRESS, step_resource


class TransferProgress:
    """Progress of one step's bytes on the way: a Prefect progress artifact (updated at
    most once a second) and a ``cutover.step.progress`` event every few seconds (bytes
    sent, rate, and total and percent when known), which the status page shows.

    Call it as ``progress(done, total)`` (an upload: total known) or ``progress(done)``
    (a stream: pg_dump -Fc's output size is known only at its end). It may be called from
    another thread than the task's: the run context is captured here, so the events and
    the artifact still belong to the task run."""

    EVENT_EVERY_S = 2.0

    def __init__(self, description: str, cutover: str = "", step_id: str = "", phase: str = "") -> None:
        self.description = description
        self.artifact_id: Any = None
        self.last = 0.0
        self.resource = step_resource(cutover, step_id, phase) if step_id else None
        self.context = contextvars.copy_context()
        self.started = time.monotonic()
        self.last_event: float | None = None  # the first chunk reports at once
        self.last_bytes = 0

    def __call__(self, done: int, total: int | None = None) -> None:
        self.context.run(self._report, done, total)

    def _report(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if self.resource is not None and (self.last_event is None or now - self.last_event >= self.EVENT_EVERY_S or finished):
            since = self.last_event if self.last_event is not None else self.started
            rate = (done - self.last_bytes) / (now - since) if now > since else 0.0
            payload = {"bytes_sent": done, "rate_bps": round(rate), "elapsed_s": round(now - self.started, 1)}
            if total:
                payload.update(total=total, percent=round(100.0 * done / total, 1))
            emit_event(STEP_PROGRESS, resource=self.resource, payload=payload)
            self.last_event, self.last_bytes = now, done
        if self.artifact_id is not None and now - self.last < 1.0 and not finished:
            return
        self.last = now
        percent = (100.0 * done / total if total else 100.0) if total is not None else 0.0
        description = self.description if total is not None else f"{self.description}: {done / 1e6:.1f} MB sent"
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(percent, description=description)
        else:
            update_progress_artifact(self.artifact_id, percent, description=description)

    def finish(self) -> None:
        """Mark a stream's artifact done (its total is known only now)."""
        if self.artifact_id is not None:
            self.context.run(update_progress_artifact, self.artifact_id, 100.0, f"{self.description}: done")
