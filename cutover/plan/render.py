"""Ways to show a plan: a readable table, JSON for tools, Mermaid for docs."""

from __future__ import annotations

import json

from cutover.plan.build import Plan


def duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def as_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2)


def as_text(plan: Plan) -> str:
    """One line per step in execution order, grouped by application; ``*`` marks the
    critical path, ``!`` a step at or after the point of no return."""
    critical = set(plan.critical_path)
    width = max((len(s.id) for s in plan.steps.values()), default=10)
    lines = [
        f"cutover {plan.cutover}: {len(plan.steps)} steps, estimated {duration(plan.estimate_s)} along the critical path (*)",
        "",
        f"   {'step':<{width}}  {'estimate':>8}  after",
    ]
    for step in plan.steps.values():
        mark = ("*" if step.id in critical else " ") + ("!" if step.irreversible else " ")
        after = (
            ", ".join(step.depends_on)
            if len(step.depends_on) <= 3
            else (f"{', '.join(step.depends_on[:2])} and {len(step.depends_on) - 2} more")
        )
        method = f" [{step.method}]" if step.method and step.phase in ("export", "stream") else ""
        lines.append(f"{mark} {step.id:<{width}}  {duration(step.estimate_s):>8}  {after}{method}")
    lines += ["", "critical path: " + " -> ".join(plan.critical_path), "! = at or after the point of no return"]
    return "\n".join(lines)


def as_mermaid(plan: Plan) -> str:
    """A ``flowchart LR`` with one subgraph per application; critical steps highlighted."""
    ids = {sid: f"s{i}" for i, sid in enumerate(plan.steps)}
    lines = ["flowchart LR"]
    groups: dict[str | None, list[str]] = {}
    for step in plan.steps.values():
        groups.setdefault(step.application, []).append(step.id)
    for app, members in groups.items():
        if app is not None:
            lines.append(f"  subgraph {app}")
        for sid in members:
            label = sid.split("/", 1)[1] if app is not None else sid
            lines.append(f'    {ids[sid]}["{label}"]')
        if app is not None:
            lines.append("  end")
    for step in plan.steps.values():
        for dep in step.depends_on:
            lines.append(f"  {ids[dep]} --> {ids[step.id]}")
    if plan.critical_path:
        lines.append("  classDef critical stroke:#d33,stroke-width:3px")
        lines.append("  class " + ",".join(ids[s] for s in plan.critical_path) + " critical")
    return "\n".join(lines)
