"""The migration team's view: every step with its state, attempts and duration, pending
gates and decisions with their Prefect UI links, running transfers' throughput, and the
forecast with its P90. Error texts are shown here (redacted), never on the public view."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cutover.redaction import redact_text
from cutover.statuspage.eta import Eta
from cutover.statuspage.public_view import application_status
from cutover.statuspage.run_state import CutoverState


def task_run_link(ui_url: str, task_run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/task-run/{task_run_id}"


def flow_run_link(ui_url: str, flow_run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    value = float(value)
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)}m{int(value % 60):02d}s"


def _bytes(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return ""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""


def _time(value: datetime | None) -> str:
    return value.astimezone().strftime("%H:%M:%S") if value else ""


def team_state(state: CutoverState, eta: Eta | None, ui_url: str, now: datetime) -> dict[str, Any]:
    run = state.run
    groups: dict[str, list[dict[str, Any]]] = {}
    throughput = []
    for step in state.steps.values():
        group = step.application or "gates"
        running_for = (
            (now - step.started).total_seconds() if step.started and step.status in ("running", "waiting", "retrying") else None
        )
        row = {
            "step_id": step.step_id,
            "phase": step.phase,
            "status": step.status,
            "attempts": step.attempts,
            "started": _time(step.started),
            "duration": _seconds(step.duration_s if step.duration_s is not None else running_for),
            "bytes": _bytes(step.figures.get("bytes")),
            "rows": step.figures.get("rows", ""),
            "error": redact_text(step.error)[:300] if step.error else "",
            "link": task_run_link(ui_url, step.task_run_id) if step.task_run_id else "",
        }
        groups.setdefault(group, []).append(row)
        if step.progress and step.status == "running":
            p = step.progress
            throughput.append(
                {
                    "step_id": step.step_id,
                    "sent": _bytes(p.get("bytes_sent")),
                    "rate": _bytes(p.get("rate_bps")) + "/s",
                    "percent": p.get("percent"),
                    "elapsed": _seconds(p.get("elapsed_s")),
                }
            )
    applications = [
        {
            "name": name,
            "status": application_status([s for s in state.steps.values() if s.application == name and s.phase != "rollback"]),
            "steps": rows,
        }
        for name, rows in groups.items()
    ]
    gates = [
        {
            "name": g.name,
            "kind": g.kind,
            "since": _time(g.since),
            "waiting": _seconds((now - g.since).total_seconds()),
            "overdue": g.overdue,
            "link": flow_run_link(ui_url, g.flow_run_id) if g.flow_run_id else "",
        }
        for g in state.pending_gates()
    ]
    return {
        "cutover": state.name,
        "run": None
        if run is None
        else {
            "name": run.name,
            "state": run.state_name or "Running",
            "link": flow_run_link(ui_url, run.flow_run_id),
            "id": run.flow_run_id,
        },
        "applications": applications,
        "gates": gates,
        "throughput": throughput,
        "eta": None
        if eta is None
        else {
            "p50": _time(eta.expected),
            "p90": _time(eta.expected_p90),
            "planned": _time(eta.planned),
            "verdict": eta.verdict,
            "minutes": eta.minutes,
            "rehearsals": eta.rehearsals,
        },
        "last_event": _time(state.last_event_at),
        "ui_url": ui_url,
    }
