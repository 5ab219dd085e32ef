"""The stakeholders' view: per application a status in plain words, overall progress and
the expected finish. Built only from what may be public.

What goes in is chosen here, field by field: the cutover's name and window, application
names, their status, percentages, times. Never a hostname, address, port, database name,
step id or error text: none of those is copied from the state, so none can leak.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

from cutover.statuspage import i18n
from cutover.statuspage.eta import Eta
from cutover.statuspage.run_state import CutoverState, StepState

DATA_PHASES = frozenset({"export", "transfer", "import", "stream", "files"})
CHECK_PHASES = frozenset({"verify", "start", "smoke", "gate", "source_check", "dns_switch", "post_switch", "finalize"})
STATUSES = ("planned", "frozen", "moving", "checking", "live", "rolling_back", "rolled_back", "attention")
FINAL_RUN_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def application_status(steps: list[StepState]) -> str:
    """One application's status from its steps' states (see the order of the tests)."""
    by_phase: dict[str, list[StepState]] = {}
    for step in steps:
        by_phase.setdefault(step.phase, []).append(step)
    if any(s.status == "compensating" for s in steps):
        return "rolling_back"
    if any(s.status == "compensated" for s in by_phase.get("freeze", [])):
        return "rolled_back"
    if any(s.status == "failed" and s.failed_for_good for s in steps):
        return "attention"
    finals = [s for s in steps if s.phase in ("finalize", "post_switch")]
    if finals and any(s.status == "completed" for s in finals):
        return "live"
    if any(s.phase in DATA_PHASES and s.status in ("running", "retrying") for s in steps):
        return "moving"
    if any(s.phase in CHECK_PHASES and s.status != "planned" for s in steps):
        return "checking"
    if any(s.phase in DATA_PHASES and s.status != "planned" for s in steps):
        return "moving"
    if any(s.status != "planned" for s in by_phase.get("freeze", [])):
        return "frozen"
    return "planned"


def _stamp(value: datetime | None, zone: tzinfo) -> str | None:
    return value.astimezone(zone).replace(microsecond=0).isoformat() if value else None


def public_state(
    state: CutoverState,
    eta: Eta | None,
    window: tuple[datetime, datetime] | None,
    title: str | None = None,
) -> dict[str, Any]:
    """The public state as plain JSON-able data (language-neutral keys)."""
    zone = window[0].tzinfo if window and window[0].tzinfo else UTC
    applications = []
    forward = [s for s in state.steps.values() if s.phase != "rollback"]
    for name in state.applications():
        steps = [s for s in forward if s.application == name]
        done = sum(1 for s in steps if s.status == "completed")
        applications.append(
            {
                "name": name,
                "status": application_status(steps),
                "percent": round(100 * done / len(steps)) if steps else 0,
            }
        )
    done = sum(1 for s in forward if s.status == "completed")
    statuses = {a["status"] for a in applications}
    run = state.run
    if run is None:
        overall = "not_started"
    elif "attention" in statuses:
        overall = "attention"
    elif run.state_type in FINAL_RUN_STATES:
        if statuses == {"live"} and run.state_type == "COMPLETED":
            overall = "completed"
        elif "rolled_back" in statuses and statuses <= {"rolled_back", "planned"}:
            overall = "rolled_back"
        else:
            overall = "attention"
    elif state.pending_gates():
        overall = "waiting"
    else:
        overall = "running"
    return {
        "cutover": title or state.name,
        "window": {"start": _stamp(window[0], zone), "end": _stamp(window[1], zone)} if window else None,
        "state": overall,
        "applications": applications,
        "progress": {"done": done, "total": len(forward), "percent": round(100 * done / len(forward)) if forward else 0},
        "eta": None
        if eta is None
        else {
            "expected": _stamp(eta.expected, zone),
            "verdict": eta.verdict,
            "minutes": eta.minutes,
        },
        "updated": _stamp(state.last_event_at, zone),
    }


def _when(iso: str | None, lang: str, with_day: bool = True) -> str:
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso)
    day = i18n.WEEKDAYS[lang][moment.weekday()]
    return f"{day} {moment:%d-%m %H:%M}" if with_day else f"{moment:%H:%M:%S}"


def localized(public: dict[str, Any], lang: str) -> dict[str, Any]:
    """The public state with its words in ``lang``, for the template and the feed."""

    def t(key: str, **values: Any) -> str:
        return i18n.text(lang, key, **values)

    eta = public.get("eta")
    if eta is None:
        eta_text = t("eta.unknown")
    else:
        verdict = t(f"eta.{eta['verdict']}", minutes=eta["minutes"])
        eta_text = f"{_when(eta['expected'], lang)} · {verdict}"
    window = public.get("window")
    return {
        **public,
        "lang": lang,
        "state_label": t(f"run.{public['state']}"),
        "window_label": f"{_when(window['start'], lang)} {t('to')} {_when(window['end'], lang)}" if window else "",
        "eta_label": eta_text,
        "updated_label": _when(public["updated"], lang) if public.get("updated") else t("no_update"),
        "progress_label": t("steps_done", done=public["progress"]["done"], total=public["progress"]["total"]),
        "applications": [{**a, "label": t(f"status.{a['status']}")} for a in public["applications"]],
    }
