"""The cutover report: per database the chain of custody, every decision, DNS before and
after, the timeline, with a verdict on top; built from what a run recorded in Prefect,
rendered as HTML (printable on A4), Markdown (the run's artifact) or JSON (whose sha256 is
the report's digest). ``public=True`` leaves out every host name.

    record (gather: Prefect API) -> build_report (pure) -> render(report, "html"|"md"|"json")
"""

from __future__ import annotations

from collections.abc import Callable

from cutover.report.as_html import render_html
from cutover.report.as_json import render_json
from cutover.report.as_markdown import render_markdown
from cutover.report.build import build_report
from cutover.report.model import Report

ARTIFACT_KEY = "cutover-report"  # the key of the report artifact of a cutover run and of a rollback run
FORMATS: dict[str, Callable[[Report], str]] = {"html": render_html, "md": render_markdown, "json": render_json}

__all__ = ["ARTIFACT_KEY", "FORMATS", "Report", "build_report", "render"]


def render(report: Report, format: str) -> str:
    """``report`` as ``html``, ``md`` or ``json``."""
    return FORMATS[format](report)
