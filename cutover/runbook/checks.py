"""Checks of meaning: what no single field can tell on its own.

Unknown references (applications, sites, databases, gates), duplicate names, dependency
cycles (named, ``a -> b -> a``), DNS records outside the zone, a window that ends before it
starts, sites lacking what a step needs, smoke SQL that is not plainly one read-only query,
and retries that would wait longer than a day. Each finding carries the key path it is
about, so the loader can point at the line.

The checks also run on a runbook that did not validate (``cutover.runbook.salvage``): any
part of it may then be ``None``, and ``broken`` holds the paths of parts that were given but
are wrong. A check skips what it cannot see instead of guessing, so it never reports a
consequence of a problem already reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cutover.runbook.model import Action, Runbook
from cutover.runbook.readonly_sql import read_only_problem
from cutover.runbook.suggest import did_you_mean
from cutover.runbook.yaml_source import Path_

ACTION_SECTIONS = ("freeze", "unfreeze", "start", "stop", "smoke", "finalize")
MAX_RETRY_WAIT_S = 24 * 3600


@dataclass(frozen=True)
class Finding:
    path: Path_
    message: str
    at_key: bool = False


def check(runbook: Runbook, broken: frozenset[Path_] = frozenset()) -> list[Finding]:
    found: list[Finding] = []
    found += _window(runbook)
    found += _retries(runbook)
    found += _duplicates(runbook)
    found += _dependencies(runbook, broken)
    found += _sites_and_databases(runbook, broken)
    found += _smoke_sql(runbook)
    found += _dns(runbook, broken)
    found += _gates(runbook, broken)
    found += _groups(runbook, broken)
    return found


def _apps(runbook: Runbook) -> list[tuple[int, Any]]:
    """(index, application) for the applications that exist, even half-validated."""
    return [(i, app) for i, app in enumerate(runbook.applications or []) if app is not None]


def _items(items: list[Any] | None) -> list[tuple[int, Any]]:
    return [(j, item) for j, item in enumerate(items or []) if item is not None]


def _known_apps(runbook: Runbook, broken: frozenset[Path_]) -> list[str] | None:
    """The application names, or None when some application's name could not be read (a
    reference to it would look unknown)."""
    if runbook.applications is None:
        return None
    names = []
    for app in runbook.applications:
        if app is None or app.name is None:
            return None
        names.append(app.name)
    return names


def _window(runbook: Runbook) -> list[Finding]:
    window = runbook.window
    if window is None or window.start is None or window.end is None:
        return []
    if window.end <= window.start:
        return [Finding(("window", "end"), "the window ends before it starts")]
    return []


def _retries(runbook: Runbook) -> list[Finding]:
    defaults = runbook.defaults
    if defaults is None:
        return []
    waited = sum(defaults.retry_delay_s * 2**i for i in range(defaults.retries))
    if waited > MAX_RETRY_WAIT_S:
        return [
            Finding(
                ("defaults", "retries"),
                f"{defaults.retries} retries doubling from {defaults.retry_delay_s:g} s "
                f"would wait {waited / 3600:.0f} hours for one step; at most {MAX_RETRY_WAIT_S // 3600} hours",
            )
        ]
    return []


def _duplicates(runbook: Runbook) -> list[Finding]:
    found = []
    seen: dict[str, int] = {}
    for i, app in _apps(runbook):
        if app.name is None:
            continue
        if app.name in seen:
            found.append(
                Finding(("applications", i, "name"), f"duplicate application '{app.name}' (also applications[{seen[app.name]}])")
            )
        seen.setdefault(app.name, i)
    targets: dict[tuple[str, str], str] = {}
    records: dict[tuple[str, str], str] = {}
    for i, app in _apps(runbook):
        names: set[str] = set()
        for j, db in _items(app.databases):
            if db.name is None:
                continue
            path = ("applications", i, "databases", j, "name")
            if db.name in names:
                found.append(Finding(path, f"database '{db.name}' is listed twice in '{app.name}'"))
            names.add(db.name)
            target = db.target_name or db.name
            if db.to is None:
                continue
            key = (db.to, target)
            if key in targets and targets[key] != f"{app.name}/{db.name}":
                found.append(Finding(path, f"database '{target}' on site '{db.to}' is also the target of {targets[key]}"))
            targets.setdefault(key, f"{app.name}/{db.name}")
        file_names: set[str] = set()
        for j, moved in _items(app.files):
            if moved.name in file_names:
                found.append(
                    Finding(
                        ("applications", i, "files", j, "name"), f"files entry '{moved.name}' is listed twice in '{app.name}'"
                    )
                )
            file_names.add(moved.name)
        for j, record in _items(app.dns):
            key = (record.name, record.type)
            if key in records:
                found.append(
                    Finding(
                        ("applications", i, "dns", j, "name"),
                        f"DNS record {record.name} {record.type} is also switched by '{records[key]}'",
                    )
                )
            records.setdefault(key, app.name)
    gate_names: set[str] = set()
    for i, gate in _items(runbook.gates):
        if gate.name is None:
            continue
        if gate.name in gate_names:
            found.append(Finding(("gates", i, "name"), f"duplicate gate '{gate.name}'"))
        gate_names.add(gate.name)
    return found


def _dependencies(runbook: Runbook, broken: frozenset[Path_]) -> list[Finding]:
    found = []
    names = _known_apps(runbook, broken)
    for i, app in _apps(runbook):
        for j, dep in enumerate(app.depends_on or []):
            path = ("applications", i, "depends_on", j)
            if dep == app.name:
                found.append(Finding(path, f"'{app.name}' depends on itself"))
            elif names is not None and dep not in names:
                found.append(Finding(path, f"unknown application '{dep}'" + did_you_mean(dep, names)))
    known = set(names or [a.name for _, a in _apps(runbook) if a.name])
    graph = {a.name: [d for d in (a.depends_on or []) if d in known and d != a.name] for _, a in _apps(runbook) if a.name}
    positions = {a.name: i for i, a in reversed(_apps(runbook)) if a.name}
    for cycle in find_cycles(graph):
        found.append(Finding(("applications", positions[cycle[0]], "depends_on"), "dependency cycle: " + " -> ".join(cycle)))
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
                    loop = path[path.index(nxt) :]
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


def _sites_and_databases(runbook: Runbook, broken: frozenset[Path_]) -> list[Finding]:
    if runbook.sites is None:
        return []  # a sites section that is missing or wrong is reported as such
    found = []
    sites = list(runbook.sites)
    # databases known per site: sources by their name, targets by their target name; a
    # site with a database entry that could not be read knows an unknown set (None)
    databases: dict[str, set[str] | None] = {s: set() for s in sites}

    def know(site: str | None, name: str | None) -> None:
        if site is None:
            return
        if name is None or databases.get(site, set()) is None:
            databases[site] = None
        else:
            databases.setdefault(site, set()).add(name)  # type: ignore[union-attr]

    for i, app in _apps(runbook):
        for j, db in enumerate(app.databases or []):
            if db is None:
                for site in sites:
                    databases[site] = None  # which sites it touches is unknown
                continue
            base = ("applications", i, "databases", j)
            for key, site_name in (("from", db.from_), ("to", db.to)):
                if site_name is None:
                    continue
                found += _site_has(runbook, site_name, "postgres", (*base, key), sites)
            target = runbook.sites.get(db.to) if db.to else None
            if target is not None and target.ssh is None:
                found.append(
                    Finding((*base, "to"), f"site '{db.to}' has no ssh endpoint: pg_restore runs on the target host over SSH")
                )
            if db.from_ is not None and db.from_ == db.to:
                found.append(Finding((*base, "to"), "a database moves to another site, not onto its own"))
            know(db.from_, db.name)
            know(db.to, db.target_name or db.name if (*base, "target_name") not in broken else None)
        for j, moved in _items(app.files):
            for key, site_name in (("from", moved.from_), ("to", moved.to)):
                if site_name not in runbook.sites:
                    found.append(
                        Finding(
                            ("applications", i, "files", j, key), f"unknown site '{site_name}'" + did_you_mean(site_name, sites)
                        )
                    )
            target = runbook.sites.get(moved.to)
            if target is not None and target.ssh is None:
                found.append(
                    Finding(("applications", i, "files", j, "to"), f"site '{moved.to}' has no ssh endpoint to upload to")
                )
            elif target is not None and target.ssh is not None and target.ssh.files_root is None:
                found.append(
                    Finding(
                        ("applications", i, "files", j, "to"),
                        f"site '{moved.to}' declares no ssh.files_root: files land only under a declared root",
                    )
                )
            source = runbook.sites.get(moved.from_)
            if source is not None and source.files_root is None:
                found.append(
                    Finding(
                        ("applications", i, "files", j, "from"),
                        f"site '{moved.from_}' declares no files_root: files are read only under a declared root",
                    )
                )
    for i, app in _apps(runbook):
        for section in ACTION_SECTIONS:
            actions: list[Action | None] = getattr(app, section) or []
            for j, action in _items(actions):
                found += _action_references(runbook, action, ("applications", i, section, j), databases, sites)
    return found


def _site_has(runbook: Runbook, site_name: str, needs: str, path: Path_, sites: list[str]) -> list[Finding]:
    if site_name not in runbook.sites:
        return [Finding(path, f"unknown site '{site_name}'" + did_you_mean(site_name, sites))]
    site = runbook.sites[site_name]
    if site is not None and getattr(site, needs) is None:
        return [Finding(path, f"site '{site_name}' has no {needs} endpoint")]
    return []


def _action_references(
    runbook: Runbook, action: Action, path: Path_, databases: dict[str, set[str] | None], sites: list[str]
) -> list[Finding]:
    step = action.sql or action.ssh
    if step is None:
        return []
    kind = action.kind
    if step.site not in runbook.sites:
        return [Finding((*path, kind, "site"), f"unknown site '{step.site}'" + did_you_mean(step.site, sites))]
    site = runbook.sites[step.site]  # None: given but wrong (reported); its endpoints are unknown
    if kind == "ssh" and site is not None and site.ssh is None:
        return [Finding((*path, kind, "site"), f"site '{step.site}' has no ssh endpoint")]
    if action.sql is not None:
        if site is not None and site.postgres is None:
            return [Finding((*path, kind, "site"), f"site '{step.site}' has no postgres endpoint")]
        known = databases.get(step.site, set())
        if known is not None and action.sql.database not in known:
            return [
                Finding(
                    (*path, kind, "database"),
                    f"unknown database '{action.sql.database}' on site '{step.site}'"
                    + did_you_mean(action.sql.database, sorted(known)),
                )
            ]
    return []


def _smoke_sql(runbook: Runbook) -> list[Finding]:
    """Smoke checks run before anyone said go: their SQL only reads (actions such as freeze
    may write, on purpose)."""
    found = []
    for i, app in _apps(runbook):
        for j, action in _items(app.smoke):
            if action.sql is not None:
                problem = read_only_problem(action.sql.query)
                if problem:
                    found.append(Finding(("applications", i, "smoke", j, "sql", "query"), problem))
    return found


def _dns(runbook: Runbook, broken: frozenset[Path_]) -> list[Finding]:
    found = []
    for i, app in _apps(runbook):
        for j, record in _items(app.dns):
            path = ("applications", i, "dns", j, "name")
            if runbook.dns is None:
                if ("dns",) not in broken:
                    found.append(Finding(path, "DNS records need a top-level dns section (provider, api, zone)"))
                return found
            zone = runbook.dns.zone
            if record.name != zone and not record.name.endswith("." + zone):
                found.append(Finding(path, f"record {record.name} is outside the zone {zone}"))
    return found


def _groups(runbook: Runbook, broken: frozenset[Path_]) -> list[Finding]:
    """Applications named by move_together groups and by a database's shared_with exist."""
    found: list[Finding] = []
    names = _known_apps(runbook, broken)
    if names is None:
        return found
    for i, group in _items(runbook.move_together):
        for j, name in enumerate(group or []):
            if name not in names:
                found.append(Finding(("move_together", i, j), f"unknown application '{name}'" + did_you_mean(name, names)))
        if group is not None and len(set(group)) < 2:
            found.append(Finding(("move_together", i), "a group that moves together needs two applications or more"))
    for i, app in _apps(runbook):
        for j, db in _items(app.databases):
            for k, name in enumerate(db.shared_with or []):
                path = ("applications", i, "databases", j, "shared_with", k)
                if name not in names:
                    found.append(Finding(path, f"unknown application '{name}'" + did_you_mean(name, names)))
                elif name == app.name:
                    found.append(Finding(path, f"'{app.name}' moves the database itself; shared_with names the others"))
    return found


def _gates(runbook: Runbook, broken: frozenset[Path_]) -> list[Finding]:
    found = []
    names = _known_apps(runbook, broken)
    for name, members in (runbook.teams or {}).items():
        if not [m for m in members or [] if m.strip()]:
            found.append(Finding(("teams", name), f"team '{name}' has nobody in it"))
    for i, gate in _items(runbook.gates):
        for j, approver in enumerate(gate.approvers or []):
            if not approver.strip():
                found.append(Finding(("gates", i, "approvers", j), "an approver needs a name"))
        if names is None or gate.applications is None or gate.applications == "all":
            continue
        for j, app in enumerate(gate.applications):
            if app not in names:
                found.append(Finding(("gates", i, "applications", j), f"unknown application '{app}'" + did_you_mean(app, names)))
    return found
