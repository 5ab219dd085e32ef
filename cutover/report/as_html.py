"""The report as one self-contained HTML page (its CSS inline): readable in a browser and
printable on A4 (``templates/report.html``, ``templates/report.css``)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from cutover.report.model import Report
from cutover.report.words import NOT_RECORDED, OUTCOME_CLASS, attempt, count, or_not_recorded, seconds, size, when


def _clock(value: str | None) -> str:
    """``18:04:05`` (the timeline's columns are narrow; its date is the run's)."""
    return value[11:19] if value and len(value) >= 19 else "-"


def _roles(value: list[str] | None, empty: str) -> str:
    if value is None:
        return NOT_RECORDED
    return ", ".join(value) if value else empty


def _css_string(value: str) -> Markup:
    """A CSS string literal of ``value`` that cannot end the <style> element it sits in."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("<", "\\3c ").replace("\n", " ")
    return Markup(f'"{escaped}"')


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cutover.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        when_or_dash=lambda v: when(v) if v else "-",
        nr=or_not_recorded,
        count=count,
        size=size,
        seconds=seconds,
        clock=_clock,
        roles=_roles,
        attempt=attempt,
        css_string=_css_string,
    )
    return env


def render_html(report: Report) -> str:
    css = resources.files("cutover.report").joinpath("templates/report.css").read_text(encoding="utf-8")
    digest = report.digest.value[:16] if report.digest else "unsigned"
    footer = f"Cutover report {report.run.cutover} · {report.variant} · digest {digest}…"
    context: dict[str, Any] = {
        "r": report,
        "css": Markup(css),
        "footer": footer,
        "verdict_class": OUTCOME_CLASS[report.verdict.outcome],
    }
    return _environment().get_template("report.html").render(**context)
