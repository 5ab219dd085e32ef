"""A transfer's progress as a Prefect progress artifact, updated at most once a second."""

from __future__ import annotations

import time

from prefect.artifacts import create_progress_artifact, update_progress_artifact


class TransferProgress:
    """``progress(done, total)`` for :class:`cutover.phases.context.StepContext`."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.artifact_id = None
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.artifact_id is not None and now - self.last < 1.0 and done < total:
            return
        self.last = now
        percent = 100.0 * done / total if total else 100.0
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(percent, description=self.description)
        else:
            update_progress_artifact(self.artifact_id, percent)
