"""Runbook -> plan: a DAG of steps with stable, readable ids.

Per application::

    freeze -> (per database: export -> transfer -> import | stream) -> verify
           -> start -> smoke -> [gate] -> source-check -> dns -> post-switch -> finalize

Across applications (``depends_on``): freezing goes consumers first (an application is
frozen only after everything that reads it is frozen); a dependant's smoke tests wait for
its dependencies' smoke tests, and its DNS switch for theirs. A gate waits for the smoke
tests of the applications it covers and holds back their switch.

The plan is pure data: the same runbook (and sizes) always gives the same plan, so its
hash can travel with an approval and a retried run finds the same step ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cutover.plan.graph import critical_path, topological_order
from cutover.plan.phases import PHASES
from cutover.runbook.model import Application, DatabaseMove, Runbook

StepInfo = dict[str, Any]
"""What the planner collects about a step before it becomes a :class:`Step`."""


@dataclass(frozen=True)
class Step:
    id: str
    phase: str
    application: str | None
    depends_on: tuple[str, ...]
    estimate_s: float
    database: str | None = None  # the database a move step moves
    item: str | None = None  # the files entry a files step moves
    gate: str | None = None  # the gate a gate step asks
    method: str | None = None
    compensation: str | None = None
    irreversible: bool = False  # at or after the point of no return
    reads: tuple[str, ...] = ()  # steps whose results it is given (besides waiting for its depends_on)


@dataclass(frozen=True)
class Plan:
    cutover: str
    steps: dict[str, Step]  # in a topological order
    critical_path: list[str]
    estimate_s: float
    methods: dict[str, str] = field(default_factory=dict)  # "app/db" -> stream|copy|file

    def order(self) -> list[str]:
        return list(self.steps)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-able data (``cutover plan --format json``, the journal's
        ``plan-<attempt>``); :meth:`from_dict` reads it back exactly."""
        return {
            "cutover": self.cutover,
            "estimate_s": round(self.estimate_s, 1),
            "critical_path": self.critical_path,
            "methods": dict(self.methods),
            "steps": [
                {
                    "id": s.id,
                    "application": s.application,
                    "phase": s.phase,
                    "depends_on": list(s.depends_on),
                    "estimate_s": s.estimate_s,
                    **({"database": s.database, "method": s.method} if s.database else {}),
                    **({"item": s.item} if s.item else {}),
                    **({"gate": s.gate} if s.gate else {}),
                    **({"compensation": s.compensation} if s.compensation else {}),
                    **({"irreversible": True} if s.irreversible else {}),
                    **({"reads": list(s.reads)} if s.reads else {}),
                }
                for s in self.steps.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        steps = {
            item["id"]: Step(
                id=item["id"],
                phase=item["phase"],
                application=item.get("application"),
                depends_on=tuple(item.get("depends_on", ())),
                estimate_s=float(item.get("estimate_s", 0)),
                database=item.get("database"),
                item=item.get("item"),
                gate=item.get("gate"),
                method=item.get("method"),
                compensation=item.get("compensation"),
                irreversible=bool(item.get("irreversible", False)),
                reads=tuple(item.get("reads", ())),
            )
            for item in data["steps"]
        }
        return cls(
            data["cutover"],
            steps,
            list(data.get("critical_path", [])),
            float(data.get("estimate_s", 0)),
            dict(data.get("methods", {})),
        )

    def digest(self) -> str:
        """A hash of the plan's shape: which steps, in which order, with which edges."""
        shape = [(s.id, s.depends_on, s.method) for s in self.steps.values()]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


def step_id(application: str, phase: str, item: str | None = None) -> str:
    """``<application>/<segment>[/<item>]``: the only place a step id is made."""
    return f"{application}/{PHASES[phase].segment}" + (f"/{item}" if item else "")


def gate_id(name: str) -> str:
    return f"gate/{name}"


def choose_method(runbook: Runbook, db: DatabaseMove, size: int | None) -> str:
    """``auto`` streams small databases (one pipe, the fewest processes) and copies the others
    table by table (several tables at a time, resumable per table: bench/window.py measured
    it faster than the stream on the sandbox estate); with no size known it copies."""
    if db.method != "auto":
        return db.method
    size = size if size is not None else db.size_bytes
    if size is None:
        return "copy"
    return "stream" if size < runbook.defaults.stream_below_bytes else "copy"


def build_plan(
    runbook: Runbook,
    *,
    sizes: Mapping[str, int] | None = None,
    estimates: Mapping[str, float] | None = None,
    methods: Mapping[str, str] | None = None,
) -> Plan:
    """Plan a runbook. ``sizes`` maps ``"app/db"`` to bytes (from preflight); ``estimates``
    maps a step id or a phase to seconds (from rehearsals), overriding the defaults;
    ``methods`` maps ``"app/db"`` to the method an earlier run used (a rollback plans the
    steps that run took)."""
    known_sizes: Mapping[str, int] = sizes or {}
    chosen_methods: Mapping[str, str] = methods or {}
    known_estimates: Mapping[str, float] = estimates or {}
    preds: dict[str, list[str]] = {}
    info: dict[str, StepInfo] = {}
    planned_methods: dict[str, str] = {}
    apps = runbook.applications
    consumers: dict[str, list[str]] = {a.name: [] for a in apps}
    for app in apps:
        for dep in app.depends_on:
            consumers[dep].append(app.name)
    by_name = {a.name: a for a in apps}
    ponr = runbook.point_of_no_return

    def add(sid: str, phase: str, app: Application | None, deps: list[str], **extra: Any) -> None:
        preds[sid] = deps
        info[sid] = {"phase": phase, "application": app.name if app else None, **extra}

    gates_for: dict[str, list[str]] = {}
    for gate in runbook.gates:
        covered = [a.name for a in apps] if gate.applications == "all" else gate.applications
        for name in covered:
            gates_for.setdefault(f"{name}:{gate.before}", []).append(gate_id(gate.name))

    for app in apps:
        a = app.name
        add(step_id(a, "freeze"), "freeze", app, [step_id(c, "freeze") for c in consumers[a]])
        ready: list[str] = []
        for db in app.databases:
            key = f"{a}/{db.name}"
            method = chosen_methods.get(key) or choose_method(runbook, db, known_sizes.get(key))
            planned_methods[key] = method
            size = known_sizes.get(key, db.size_bytes)
            common = {"database": db.name, "method": method, "size": size, "on_rollback": db.on_rollback}
            if method in ("stream", "copy"):  # straight from source to target: one step
                add(step_id(a, "stream", db.name), "stream", app, [step_id(a, "freeze")], **common)
                last = step_id(a, "stream", db.name)
            else:
                add(step_id(a, "export", db.name), "export", app, [step_id(a, "freeze")], **common)
                add(step_id(a, "transfer", db.name), "transfer", app, [step_id(a, "export", db.name)], **common)
                add(step_id(a, "import", db.name), "import", app, [step_id(a, "transfer", db.name)], **common)
                last = step_id(a, "import", db.name)
            add(step_id(a, "verify", db.name), "verify", app, [last], **common)
            ready.append(step_id(a, "verify", db.name))
        for moved in app.files:
            add(step_id(a, "files", moved.name), "files", app, [step_id(a, "freeze")], item=moved.name)
            ready.append(step_id(a, "files", moved.name))
        add(step_id(a, "start"), "start", app, ready or [step_id(a, "freeze")])
        add(step_id(a, "smoke"), "smoke", app, [step_id(a, "start")] + [step_id(d, "smoke") for d in app.depends_on])
        before_switch = [step_id(a, "smoke"), *gates_for.get(f"{a}:dns_switch", [])]
        add(step_id(a, "source_check"), "source_check", app, before_switch)
        last = step_id(a, "source_check")
        if app.dns:
            add(
                step_id(a, "dns_switch"),
                "dns_switch",
                app,
                [last] + [step_id(d, "dns_switch") for d in app.depends_on if by_name[d].dns],
            )
            add(step_id(a, "post_switch"), "post_switch", app, [step_id(a, "dns_switch")])
            last = step_id(a, "post_switch")
        add(step_id(a, "finalize"), "finalize", app, [last, *gates_for.get(f"{a}:finalize", [])])

    for gate in runbook.gates:
        covered = [a.name for a in apps] if gate.applications == "all" else gate.applications
        deps = []
        for name in covered:
            if gate.before == "dns_switch":
                deps.append(step_id(name, "smoke"))
            else:
                deps.append(step_id(name, "post_switch" if by_name[name].dns else "source_check"))
        add(gate_id(gate.name), "gate", None, deps, gate=gate.name)

    order = topological_order(preds)
    durations = {sid: round(_estimate(sid, info[sid], known_estimates), 1) for sid in order}  # tenths: exact in JSON
    path, total = critical_path(preds, durations, order)
    reads = _reads(info, preds)
    steps = {}
    for sid in order:
        meta = info[sid]
        phase = meta["phase"]
        steps[sid] = Step(
            id=sid,
            phase=phase,
            application=meta["application"],
            depends_on=tuple(preds[sid]),
            estimate_s=durations[sid],
            database=meta.get("database"),
            item=meta.get("item"),
            gate=meta.get("gate"),
            method=meta.get("method"),
            compensation=PHASES[phase].compensation_text(meta.get("on_rollback")),
            irreversible=ponr in PHASES[phase].after_point,
            reads=reads.get(sid, ()),
        )
    return Plan(runbook.cutover, steps, path, total, planned_methods)


def _reads(info: dict[str, StepInfo], preds: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """The results each step is given: a verify and a source check their application's
    freeze (the fingerprint); a gate the verify, files and smoke steps of the applications
    it holds (its evidence); a DNS switch the gate that held it (the change set approved)."""
    reads: dict[str, tuple[str, ...]] = {}
    gate_of: dict[str, str] = {}
    for sid, meta in info.items():
        if meta["phase"] == "source_check":
            for dep in preds[sid]:
                if info[dep]["phase"] == "gate":
                    gate_of[meta["application"]] = dep
    for sid, meta in info.items():
        phase, app = meta["phase"], meta["application"]
        if phase in ("verify", "source_check"):
            reads[sid] = (step_id(app, "freeze"),)
        elif phase == "gate":
            held = {info[dep]["application"] for dep in preds[sid]}
            reads[sid] = tuple(
                other for other, m in info.items() if m["application"] in held and m["phase"] in ("verify", "files", "smoke")
            )
        elif phase == "dns_switch" and app in gate_of:
            reads[sid] = (gate_of[app],)
    return reads


def _estimate(sid: str, meta: StepInfo, estimates: Mapping[str, float]) -> float:
    if sid in estimates:
        return float(estimates[sid])
    phase = meta["phase"]
    if phase in estimates:
        return float(estimates[phase])
    size = meta.get("size")
    throughput = PHASES[phase].throughput
    if size and throughput:
        return max(1.0, float(size) / throughput)
    return PHASES[phase].estimate_s
