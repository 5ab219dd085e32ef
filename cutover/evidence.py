"""What a decision form shows: the evidence before a go/no-go, the failure and the writes
at the point of no return. Pure: Markdown from the steps' results, testable on its own.

The Prefect UI renders the description above the form in a narrow column, so the tables
have few, short columns, and the figure an operator needs most comes first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cutover.plan.build import Step
from cutover.results import ActionsResult, DnsChange, FilesResult, VerifyResult


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else _cell(value if value is not None else "-")


def dns_plan_digest(changes: list[DnsChange]) -> str:
    """A short hash of a DNS change set: travels with the approval, so the switch can tell
    whether the records still hold the values the approver saw."""
    shape = [(c.name, c.type, c.old, c.new, c.ttl) for c in changes]
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def gate_markdown(
    *,
    gate: str,
    description: str,
    applications: list[str],
    approvers: list[str],
    evidence: Mapping[str, Any],
    steps: Mapping[str, Step],
    dns_changes: list[DnsChange],
    patience: str,
    rolled_back: Mapping[str, str] | None = None,
) -> str:
    """The go/no-go form's description: per application the verification of every database,
    every files entry and every smoke check, then the exact DNS changes the switch will make."""
    lines = [f"## Go/no-go: {gate}", ""]
    if description:
        lines += [description, ""]
    lines += [
        f"**Go** switches DNS for {len(applications)} application(s): {', '.join(applications)}.",
        "**No-go** switches nothing and rolls back every application (the old site comes back).",
        "",
    ]
    if rolled_back:
        lines += [
            f"**Already rolled back**, {len(rolled_back)} application(s), back on the old site whatever you decide:",
            "",
            *[f"- {name}: {why}" for name, why in rolled_back.items()],
            "",
        ]
    lines += [
        f"Who decides: {', '.join(approvers) if approvers else 'anyone, giving their name'}. {patience}",
        "",
        "### Databases verified",
        "",
        "Every table's row count and content hash, the schema objects and the sequences on the new site equal the old site's at the freeze.",
        "",
        "| database | rows | tables | equal |",
        "|---|---:|---:|---|",
    ]
    verified = [(sid, steps[sid]) for sid in evidence if steps[sid].phase == "verify"]
    for sid, step in sorted(verified, key=lambda item: item[0]):
        result: VerifyResult = evidence[sid]
        match = "yes" if result.fingerprint_match else "-"
        lines.append(f"| {step.application}/{step.database} | {_count(result.rows)} | {_count(result.tables)} | {match} |")
    if not verified:
        lines.append("| (no databases) | | | |")
    files = [(sid, steps[sid]) for sid in evidence if steps[sid].phase == "files"]
    if files:
        lines += ["", "### Files moved", "", "| files | files | bytes | sha256 |", "|---|---:|---:|---|"]
        for sid, step in sorted(files, key=lambda item: item[0]):
            moved: FilesResult = evidence[sid]
            lines.append(
                f"| {step.application}/{step.item} | {_count(moved.files)} | {_count(moved.size)} | checked on both ends |"
            )
    lines += ["", "### Smoke tests", "", "| check | result |", "|---|---|"]
    smoke = [(sid, steps[sid]) for sid in evidence if steps[sid].phase == "smoke"]
    for sid, step in sorted(smoke, key=lambda item: item[0]):
        checks: ActionsResult = evidence[sid]
        if not checks.results:
            lines.append(f"| {step.application}: none defined | - |")
        for check in checks.results:
            lines.append(f"| {_cell(check.action)} | {_cell(check.describe())} |")
    lines += ["", "### DNS changes the switch will make", ""]
    if dns_changes:
        lines += ["| record | value | TTL |", "|---|---|---|"]
        for change in dns_changes:
            lines.append(f"| {change.name} {change.type} | {_cell(_value_change(change))} | {_ttl_change(change)} |")
        lines += [
            "",
            f"Change set `{dns_plan_digest(dns_changes)}`: the switch refuses a record that no longer holds the value shown here.",
        ]
    else:
        lines.append("No DNS records to switch.")
    return "\n".join(lines) + "\n"


def _value_change(change: DnsChange) -> str:
    if change.action.startswith("unknown") or change.old is None:
        return f"? -> {change.new} ({change.action})"
    if change.action == "create":
        return f"(none) -> {change.new}"
    if change.action == "none":
        return f"{change.new} already"
    return f"{', '.join(change.old)} -> {change.new}"


def _ttl_change(change: DnsChange) -> str:
    old = change.old_ttl
    return f"{change.ttl}" if old is None or old == change.ttl else f"{old} -> {change.ttl}"


def point_of_no_return_markdown(failed: Mapping[str, str], writes: Mapping[str, int | str]) -> str:
    """The point-of-no-return form's description: what failed, and the rows each target
    database took since the switch (what a rollback would lose)."""
    lines = ["## Past the point of no return", "", "DNS already points at the new site. What failed after the switch:", ""]
    for step, error in failed.items():
        text = _cell(error).replace(",", ", ")  # long JSON snippets must wrap in the narrow form
        lines.append(f"- **{step}**: {(text[:240] + '...') if len(text) > 240 else text or 'failed'}")
    total = sum(v for v in writes.values() if isinstance(v, int))
    lines += [
        "",
        f"### Written on the new site since the switch: {total:,} rows",
        "",
        "Counted when this was asked; counted again when you answer, and recorded with your decision.",
        "",
        "| database | rows |",
        "|---|---:|",
    ]
    for key, count in sorted(writes.items()):
        lines.append(f"| {key} | {_count(count)} |")
    if not writes:
        lines.append("| (none counted) | |")
    lines += [
        "",
        "**Roll forward**: nothing is undone; the run ends Failed. Fix the cause and retry the run: finished steps are skipped.",
        "",
        "**Roll back**: DNS back to the old site, the new site into maintenance, the sources writable again. "
        "Tick *Acknowledge writes lost*: the rows above exist only on the new site.",
    ]
    return "\n".join(lines) + "\n"
