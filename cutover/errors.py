"""Every error Cutover raises on purpose, in one tree.

    CutoverError
    ├── RunbookError          the user's runbook is wrong (carries every problem found)
    ├── SandboxError          the local sandbox estate could not be started or reached
    ├── UnsafeChange          refused: it needs an explicit acknowledgement or override
    └── StepError             a cutover step failed
        ├── TransientStepError   worth retrying (connection refused, timeout, lock)
        └── PermanentStepError   retrying cannot help (checksum mismatch, missing role)

Library exceptions (paramiko, psycopg, httpx) are translated into these at the adapter
boundary (``raise TransientStepError(...) from exc``), so flows never see them.
"""

from __future__ import annotations

from dataclasses import dataclass


class CutoverError(Exception):
    """Base of every error Cutover raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a runbook, located precisely enough to jump to it."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class RunbookError(CutoverError):
    """A runbook that cannot be used; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))


class SandboxError(CutoverError):
    """The sandbox estate could not be started, found or stopped."""


class UnsafeChange(CutoverError):
    """A change that would lose data or cross a safety limit without an explicit override."""


class StepError(CutoverError):
    """A cutover step failed."""


class TransientStepError(StepError):
    """A failure that a retry may fix."""


class PermanentStepError(StepError):
    """A failure that a retry cannot fix: stop (and roll back) instead."""


# Mistakes in code or input: the same call fails the same way every time.
_NEVER_RETRIED: tuple[type[BaseException], ...] = (
    PermanentStepError,
    UnsafeChange,
    RunbookError,
    LookupError,
    TypeError,
    AttributeError,
    AssertionError,
    NotImplementedError,
    StopIteration,
)


def worth_retrying(exc: BaseException) -> bool:
    """Whether a step that raised ``exc`` may succeed when tried again: a TransientStepError,
    or an error of the world we did not classify (a connection dropped somewhere below);
    never a permanent or unsafe one, nor a mistake in the code or the runbook."""
    if isinstance(exc, TransientStepError):
        return True
    if isinstance(exc, _NEVER_RETRIED):
        return False
    # "generator raised StopIteration" and friends: a bare next() that found nothing
    return not (isinstance(exc, RuntimeError) and isinstance(exc.__cause__, StopIteration))
