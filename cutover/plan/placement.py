"""Where a step runs: the site whose worker executes it, by the runbook's ``placement``.

Pure: the flow asks ``site_of`` for every step it submits. ``None`` means the flow run's
own process (the one worker of the embedded topology, and always a gate, which pauses the
flow run). A step of a database runs at that database's source or target site; an
application's freeze and actions at the site of its first database (or files entry).
"""

from __future__ import annotations

from cutover.plan.build import Step
from cutover.runbook.model import Runbook


def site_of(runbook: Runbook, step: Step) -> str | None:
    """The site whose worker runs ``step``, or None for the flow run's own process."""
    placement = runbook.placement
    if placement is None or step.application is None:
        return None
    if step.phase in placement.at_source:
        end = "source"
    elif step.phase in placement.at_target:
        end = "target"
    else:
        return None
    app = runbook.application(step.application)
    if step.database is not None:
        moved = app.database(step.database)
        return moved.from_ if end == "source" else moved.to
    if step.item is not None:
        entry = app.files_entry(step.item)
        return entry.from_ if end == "source" else entry.to
    ends: list[tuple[str, str]] = [(m.from_, m.to) for m in app.databases] + [(f.from_, f.to) for f in app.files]
    if ends:
        source, target = ends[0]
        return source if end == "source" else target
    return None  # an application that moves no data: its actions run with the flow


def sites_used(runbook: Runbook, steps: list[Step]) -> dict[str, int]:
    """How many of ``steps`` each site's worker runs (``""``: the flow run's process)."""
    counts: dict[str, int] = {}
    for step in steps:
        site = site_of(runbook, step) or ""
        counts[site] = counts.get(site, 0) + 1
    return counts
