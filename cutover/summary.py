"""The end-of-run summary: per database what moved and how it checked out, per
application whether its smoke tests and DNS switch passed. Printed by the CLI and kept
as a Prefect markdown artifact."""

from __future__ import annotations

from typing import Any

from cutover import units
from cutover.plan.build import Plan
from cutover.results import StreamResult, VerifyResult
from cutover.runbook.model import Runbook

SUMMARY_ARTIFACT = "cutover-summary"  # the key of the summary artifact of a cutover run


def _state_word(state: Any) -> str:
    if state is None:
        return "not run"
    if state.is_completed():
        return "passed"
    if state.is_failed() or state.is_crashed():
        return "failed"
    return "not run"


def summarize(
    runbook: Runbook,
    plan: Plan,
    states: dict[str, Any],
    results: dict[str, Any],
    *,
    rollback: dict[str, Any] | None = None,
    decision: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What happened, per database and application; why the failed steps failed
    (``errors``); the rollback (what was undone, what is left by hand) and the operator's
    decision past the point of no return."""
    databases: dict[str, dict[str, Any]] = {}
    for app in runbook.applications:
        for db in app.databases:
            key = f"{app.name}/{db.name}"
            steps = [s for s in plan.steps.values() if s.application == app.name and s.database == db.name]
            by_phase = {s.phase: results.get(s.id) for s in steps}
            moved = by_phase.get("stream") or by_phase.get("export")
            sent = by_phase.get("transfer")
            verified = by_phase.get("verify")
            size = moved.bytes if moved is not None and moved.bytes is not None else (sent.bytes if sent is not None else None)
            sha = (moved.sha256 if isinstance(moved, StreamResult) else None) or (sent.sha256 if sent is not None else None)
            durations = [r.duration_s for r in by_phase.values() if r is not None and getattr(r, "duration_s", None)]
            verify_step = next((s.id for s in steps if s.phase == "verify"), None)
            databases[key] = {
                "method": plan.methods.get(key),
                "rows": verified.rows if isinstance(verified, VerifyResult) else None,
                "bytes": size,
                "sha256": sha,
                "duration_s": round(sum(durations), 2),
                "verified": verify_step is not None and _state_word(states.get(verify_step)) == "passed",
            }
    applications = {}
    sent_back = (rollback or {}).get("applications") or {}
    for app in runbook.applications:
        phase_steps = {
            s.phase: s.id for s in plan.steps.values() if s.application == app.name and s.database is None and s.item is None
        }
        dns_state = states.get(phase_steps.get("dns_switch", ""))
        finalized = states.get(phase_steps.get("finalize", ""))
        if app.name in sent_back and (rollback or {}).get("rolled_back"):
            where = "old site"
        elif app.name in sent_back:
            where = "needs attention: rollback incomplete"
        elif finalized is not None and finalized.is_completed():
            where = "new site"
        elif dns_state is not None and dns_state.is_completed():
            where = "new site (not finalized)"
        else:
            where = "old site (not moved)"
        applications[app.name] = {
            "smoke": _state_word(states.get(phase_steps.get("smoke", ""))),
            "dns": "no records"
            if not app.dns
            else ("switched" if dns_state and dns_state.is_completed() else _state_word(dns_state)),
            "post_switch": _state_word(states.get(phase_steps.get("post_switch", ""))) if app.dns else "no records",
            "site": where,
            **({"rolled_back": sent_back[app.name]} if app.name in sent_back else {}),
        }
    failed = [sid for sid, state in states.items() if state is not None and (state.is_failed() or state.is_crashed())]
    not_done = [sid for sid, state in states.items() if state is None or not state.is_completed()]
    return {
        "cutover": runbook.cutover,
        "ok": not not_done,
        "failed_steps": failed,
        "errors": errors or {},
        "not_completed": len(not_done),
        "databases": databases,
        "applications": applications,
        "rollback": rollback,
        "decision": decision,
    }


def rollback_lines(summary: dict[str, Any], bullet: str) -> list[str]:
    lines = []
    decision = summary.get("decision")
    if decision:
        verdict = "roll back" if decision["roll_back"] else "roll forward"
        lines.append(f"Past the point of no return, {decision['decided_by']} chose to {verdict}: {decision['reason'] or '-'}")
        writes = ", ".join(f"{k}: {v}" for k, v in sorted((decision.get("writes") or {}).items()))
        lines.append(f"Rows written on the target since the switch: {writes or 'none counted'}")
        if decision["roll_back"] and not decision["acknowledged"]:
            lines.append("Rollback refused: the loss of those writes was not acknowledged.")
    rollback = summary.get("rollback")
    if rollback is not None:
        if rollback.get("partial") and rollback["rolled_back"]:
            sent = rollback.get("applications") or {}
            lines.append(
                f"Partly cut over: {len(sent)} application(s) rolled back to the old site ("
                + "; ".join(f"{name}: {why}" for name, why in sent.items())
                + "); the others went on. Fix the cause and retry the run: it moves the rolled-back ones."
            )
        elif rollback["rolled_back"]:
            lines.append("Rolled back: every step that had started was undone, in reverse order.")
        else:
            lines.append("ROLLBACK INCOMPLETE. Left to do by hand, in this order:")
            lines += [f"{bullet}{item['step']}: {item['to_do']} ({item['why']})" for item in rollback["by_hand"]]
        if rollback["undone"]:
            lines.append("Undone: " + ", ".join(rollback["undone"]))
    return lines


def summary_markdown(summary: dict[str, Any]) -> str:
    verdict = "completed and verified" if summary["ok"] else "NOT completed"
    lines = [f"# Cutover {summary['cutover']}: {verdict}", ""]
    if summary["failed_steps"]:
        lines += ["Failed steps: " + ", ".join(f"`{s}`" for s in summary["failed_steps"]), ""]
        lines += [f"- `{step}`: {error}" for step, error in summary.get("errors", {}).items()] + [""]
    extra = rollback_lines(summary, "- ")
    if extra:
        lines += ["## Rollback", "", *[line if line.startswith("- ") else line + "\n" for line in extra], ""]
    lines += [
        "## Databases",
        "",
        "| database | method | rows | bytes | sha256 | duration | verified |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for key, db in summary["databases"].items():
        sha = (db["sha256"] or "-")[:16]
        lines.append(
            f"| {key} | {db['method']} | {db['rows'] if db['rows'] is not None else '-'} | {units.size(db['bytes'])} | `{sha}` | {db['duration_s']} s | {'yes' if db['verified'] else 'no'} |"
        )
    lines += [
        "",
        "## Applications",
        "",
        "| application | where it is now | smoke | DNS | after the switch |",
        "|---|---|---|---|---|",
    ]
    for name, app in summary["applications"].items():
        why = f" ({app['rolled_back']})" if app.get("rolled_back") else ""
        lines.append(f"| {name} | {app.get('site', '-')}{why} | {app['smoke']} | {app['dns']} | {app['post_switch']} |")
    return "\n".join(lines) + "\n"


def summary_text(summary: dict[str, Any]) -> str:
    verdict = "completed and verified" if summary["ok"] else "NOT completed"
    lines = [f"cutover {summary['cutover']}: {verdict}"]
    if summary["failed_steps"]:
        lines.append("failed steps: " + ", ".join(summary["failed_steps"]))
        lines += [f"  - {step}: {error}" for step, error in summary.get("errors", {}).items()]
    lines += rollback_lines(summary, "  - ")
    lines.append(f"{'database':<28} {'method':<7} {'rows':>9} {'bytes':>10} {'sha256':<16} {'time':>7}")
    for key, db in summary["databases"].items():
        rows = db["rows"] if db["rows"] is not None else "-"
        lines.append(
            f"{key:<28} {db['method'] or '-':<7} {rows:>9} {units.size(db['bytes']):>10} {(db['sha256'] or '-')[:16]:<16} {db['duration_s']:>6}s"
        )
    lines.append(f"{'application':<28} {'smoke':<8} {'dns':<10} after the switch")
    for name, app in summary["applications"].items():
        lines.append(f"{name:<28} {app['smoke']:<8} {app['dns']:<10} {app['post_switch']}")
    return "\n".join(lines)


def rollback_markdown(cutover: str, outcome: dict[str, Any]) -> str:
    """The rollback flow's artifact: what was undone and what is left by hand."""
    verdict = "rolled back" if outcome["rolled_back"] else "ROLLBACK INCOMPLETE"
    lines = [f"# Cutover {cutover}: {verdict}", ""]
    lines += [line if line.startswith("- ") else line + "\n" for line in rollback_lines({"rollback": outcome}, "- ")]
    return "\n".join(lines) + "\n"
