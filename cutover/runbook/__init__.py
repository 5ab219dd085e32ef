"""The runbook: model, loader with located errors, and JSON Schema."""

from cutover.runbook.loader import load_runbook, parse_runbook
from cutover.runbook.model import Runbook

__all__ = ["Runbook", "load_runbook", "parse_runbook"]
