"""Checks of meaning: what no single field can tell on its own.

Unknown references (applications, sites, databases, gates), duplicate names, dependency
cycles (named, ``a -> b -> a``), DNS records outside the zone, a window that ends before it
starts, and sites lacking what a step needs. Each finding carries the key path it is about,
so the loader can point at the line.
"""

from __future__ import annotations

from dataclasses import dataclass

from cutover.runbook.model import Action, Runbook
from cutover.runbook.suggest import did_you_mean
from cutover.runbook.yaml_source import Path_


@dataclass(frozen=True)
class Finding:
    path: Path_
    message: str
    at_key: bool = False


def check(runbook: Runbook) -> list[Finding]:
    found: list[Finding] = []
    found += _window(runbook)
    found += _duplicates(runbook)
    found += _dependencies(runbook)
    found += _sites_and_databases(runbook)
    found += _dns(runbook)
    found += _gates(runbook)
    return found


def _window(runbook: Runbook) -> list[Finding]:
    if runbook.window.end <= runbook.window.start:
        return [Finding(("window", "end"), "the window ends before it starts")]
    return []


def _duplicates(runbook: Runbook) -> list[Finding]:
    found = []
    seen: dict[str, int] = {}
    for i, app in enumerate(runbook.applications):
        if app.name in seen:
            found.append(Finding(("applications", i, "name"), f"duplicate application '{app.name}' (also applications[{seen[app.name]}])"))
        seen.setdefault(app.name, i)
    targets: dict[tuple[str, str], str] = {}
    records: dict[tuple[str, str], str] = {}
    for i, app in enumerate(runbook.applications):
        names: set[str] = set()
        for j, db in enumerate(app.databases):
            path = ("applications", i, "databases", j, "name")
            if db.name in names:
                found.append(Finding(path, f"database '{db.name}' is listed twice in '{app.name}'"))
            names.add(db.name)
            key = (db.to, db.target)
            if key in targets and targets[key] != f"{app.name}/{db.name}":
                found.append(Finding(path, f"database '{db.target}' on site '{db.to}' is also the target of {targets[key]}"))
            targets.setdefault(key, f"{app.name}/{db.name}")
        file_names: set[str] = set()
        for j, moved in enumerate(app.files):
            if moved.name in file_names:
                found.append(Finding(("applications", i, "files", j, "name"), f"files entry '{moved.name}' is listed twice in '{app.name}'"))
            file_names.add(moved.name)
        for j, record in enumerate(app.dns):
            key = (record.name, record.type)
            if key in records:
                found.append(Finding(("applications", i, "dns", j, "name"), f"DNS record {record.name} {record.type} is also switched by '{records[key]}'"))
            records.setdefault(key, app.name)
    gate_names: set[str] = set()
    for i, gate in enumerate(runbook.gates):
        if gate.name in gate_names:
            found.append(Finding(("gates", i, "name"), f"duplicate gate '{gate.name}'"))
        gate_names.add(gate.name)
    return found


def _dependencies(runbook: Runbook) -> list[Finding]:
    found = []
    names = [a.name for a in runbook.applications]
    known = set(names)
    for i, app in enumerate(runbook.applications):
        for j, dep in enumerate(app.depends_on):
            path = ("applications", i, "depends_on", j)
            if dep == app.name:
                found.append(Finding(path, f"'{app.name}' depends on itself"))
            elif dep not in known:
                found.append(Finding(path, f"unknown application '{dep}'" + did_you_mean(dep, names)))
    for cycle in find_cycles({a.name: [d for d in a.depends_on if d in known and d != a.name] for a in runbook.applications}):
        first = names.index(cycle[0])
        found.append(Finding(("applications", first, "depends_on"), "dependency cycle: " + " -> ".join(cycle)))
    return found


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Every elementary cycle reachable by depth-first search, each reported once, written
    from its smallest member and closed (``[a, b, a]``). Iterative: deep chains are fine."""
    cycles: list[list[str]] = []
    seen_cycles: set[tuple[str, ...]] = set()
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in graph:
        if state.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        state[root] = 1
        while stack:
            node, index = stack[-1]
            edges = graph.get(node, [])
            if index < len(edges):
                stack[-1] = (node, index + 1)
                nxt = edges[index]
                if state.get(nxt) == 1:
                    loop = path[path.index(nxt):]
                    start = loop.index(min(loop))
                    loop = loop[start:] + loop[:start]
                    if tuple(loop) not in seen_cycles:
                        seen_cycles.add(tuple(loop))
                        cycles.append([*loop, loop[0]])
                elif not state.get(nxt):
                    state[nxt] = 1
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return cycles


def _sites_and_databases(runbook: Runbook) -> list[Finding]:
    found = []
    sites = list(runbook.sites)
    # databases known per site: sources by their name, targets by their target name
    databases: dict[str, set[str]] = {s: set() for s in sites}
    for i, app in enumerate(runbook.applications):
        for j, db in enumerate(app.databases):
            base = ("applications", i, "databases", j)
            for key, site_name, needs in (("from", db.from_, "postgres"), ("to", db.to, "postgres")):
                site = runbook.sites.get(site_name)
                if site is None:
                    found.append(Finding((*base, key), f"unknown site '{site_name}'" + did_you_mean(site_name, sites)))
                elif site.postgres is None:
                    found.append(Finding((*base, key), f"site '{site_name}' has no postgres endpoint"))
            target = runbook.sites.get(db.to)
            if target is not None and target.ssh is None:
                found.append(Finding((*base, "to"), f"site '{db.to}' has no ssh endpoint: pg_restore runs on the target host over SSH"))
            if db.from_ == db.to:
                found.append(Finding((*base, "to"), "a database moves to another site, not onto its own"))
            databases.setdefault(db.from_, set()).add(db.name)
            databases.setdefault(db.to, set()).add(db.target)
        for j, moved in enumerate(app.files):
            for key, site_name in (("from", moved.from_), ("to", moved.to)):
                if site_name not in runbook.sites:
                    found.append(Finding(("applications", i, "files", j, key), f"unknown site '{site_name}'" + did_you_mean(site_name, sites)))
            target = runbook.sites.get(moved.to)
            if target is not None and target.ssh is None:
                found.append(Finding(("applications", i, "files", j, "to"), f"site '{moved.to}' has no ssh endpoint to upload to"))
        for section in ("freeze", "unfreeze", "start", "stop", "smoke", "finalize"):
            actions: list[Action] = getattr(app, section)
            for j, action in enumerate(actions):
                found += _action_references(runbook, action, ("applications", i, section, j), databases)
    return found


def _action_references(runbook: Runbook, action: Action, path: Path_, databases: dict[str, set[str]]) -> list[Finding]:
    step = action.sql or action.ssh
    if step is None:
        return []
    kind = action.kind
    site = runbook.sites.get(step.site)
    if site is None:
        return [Finding((*path, kind, "site"), f"unknown site '{step.site}'" + did_you_mean(step.site, list(runbook.sites)))]
    if kind == "ssh" and site.ssh is None:
        return [Finding((*path, kind, "site"), f"site '{step.site}' has no ssh endpoint")]
    if action.sql is not None:
        if site.postgres is None:
            return [Finding((*path, kind, "site"), f"site '{step.site}' has no postgres endpoint")]
        known = sorted(databases.get(step.site, set()))
        if action.sql.database not in known:
            return [Finding((*path, kind, "database"), f"unknown database '{action.sql.database}' on site '{step.site}'" + did_you_mean(action.sql.database, known))]
    return []


def _dns(runbook: Runbook) -> list[Finding]:
    found = []
    for i, app in enumerate(runbook.applications):
        for j, record in enumerate(app.dns):
            path = ("applications", i, "dns", j, "name")
            if runbook.dns is None:
                found.append(Finding(path, "DNS records need a top-level dns section (provider, api, zone)"))
                return found
            zone = runbook.dns.zone
            if record.name != zone and not record.name.endswith("." + zone):
                found.append(Finding(path, f"record {record.name} is outside the zone {zone}"))
    return found


def _gates(runbook: Runbook) -> list[Finding]:
    found = []
    names = [a.name for a in runbook.applications]
    for name, members in runbook.teams.items():
        if not [m for m in members if m.strip()]:
            found.append(Finding(("teams", name), f"team '{name}' has nobody in it"))
    for i, gate in enumerate(runbook.gates):
        for j, approver in enumerate(gate.approvers):
            if not approver.strip():
                found.append(Finding(("gates", i, "approvers", j), "an approver needs a name"))
        if gate.applications == "all":
            continue
        for j, app in enumerate(gate.applications):
            if app not in names:
                found.append(Finding(("gates", i, "applications", j), f"unknown application '{app}'" + did_you_mean(app, names)))
    return found
