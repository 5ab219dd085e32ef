"""Which applications a failure rolls back, under the runbook's ``on_failure`` policy. Pure.

``roll_back_all`` (the default): every application. ``roll_back_affected``: the
applications that failed, every application that depends on one of them (transitively:
it reads something that goes back to the old site), every application that must move
together with one of them (a ``move_together`` group), and every application that shares
a database with one of them (``shared_with``: the database is moved once, and it cannot be
live at both sites, so its applications are one group). The set is closed under those
three relations and holds nothing else; each member says why it is in it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from cutover.runbook.model import Runbook


def _links(runbook: Runbook) -> dict[str, list[tuple[str, str]]]:
    """For each application, the applications that go back with it, and why."""
    links: dict[str, list[tuple[str, str]]] = {app.name: [] for app in runbook.applications}
    for app in runbook.applications:
        for dep in app.depends_on:
            links[dep].append((app.name, f"depends on {dep}"))
    for group in runbook.move_together:
        for name in group:
            for other in group:
                if other != name:
                    links[name].append((other, f"moves together with {name}"))
    for app in runbook.applications:
        for db in app.databases:
            sharers = [app.name, *db.shared_with]
            for name in sharers:
                for other in sharers:
                    if other != name:
                        links[name].append((other, f"shares database {db.name} with {name}"))
    return links


def groups_of(runbook: Runbook) -> dict[str, list[str]]:
    """Per application, the applications it must move together with (groups and shared databases)."""
    together: dict[str, list[str]] = {app.name: [] for app in runbook.applications}
    for name, links in _links(runbook).items():
        for other, why in links:
            if not why.startswith("depends on") and other not in together[name]:
                together[name].append(other)
    return together


def affected_by(runbook: Runbook, failed: Iterable[str]) -> dict[str, str]:
    """The applications to roll back when ``failed`` fail for good, each with why, in the
    order they were found (the failed ones first)."""
    failed = list(dict.fromkeys(failed))
    if runbook.on_failure == "roll_back_all":
        names = ", ".join(failed)
        return {
            app.name: (
                "failed" if app.name in failed else f"rolled back with everything (on_failure: roll_back_all; {names} failed)"
            )
            for app in runbook.applications
        }
    links = _links(runbook)
    found: dict[str, str] = {name: "failed" for name in failed}
    queue = deque(failed)
    while queue:
        name = queue.popleft()
        for other, why in links.get(name, []):
            if other not in found:
                found[other] = why
                queue.append(other)
    return found
