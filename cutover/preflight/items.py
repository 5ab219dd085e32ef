"""One preflight finding, and the report of all of them as a table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """``ok`` green, ``warn`` amber (the cutover may go on; read it), ``fail`` red (the
    cutover stops before its first freeze)."""

    ok = "ok"
    warn = "warn"
    fail = "fail"


SYMBOL = {Status.ok: "green", Status.warn: "AMBER", Status.fail: "RED"}


@dataclass(frozen=True)
class Item:
    """What was checked (``area``, e.g. ``postgres``; ``subject``, e.g. ``onprem``),
    how it came out, and a one-line detail that never holds a secret value."""

    area: str
    subject: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


@dataclass
class Report:
    cutover: str
    items: list[Item] = field(default_factory=list)

    def add(self, area: str, subject: str, status: Status, detail: str) -> None:
        self.items.append(Item(area, subject, status, " ".join(detail.split())))

    @property
    def red(self) -> list[Item]:
        return [i for i in self.items if i.status is Status.fail]

    @property
    def ok(self) -> bool:
        return not self.red

    def to_dict(self) -> dict[str, Any]:
        return {"cutover": self.cutover, "ok": self.ok, "items": [i.to_dict() for i in self.items]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        report = cls(data["cutover"])
        report.items = [Item(i["area"], i["subject"], Status(i["status"]), i["detail"]) for i in data.get("items", [])]
        return report

    def summary(self) -> str:
        red = self.red
        warn = [i for i in self.items if i.status is Status.warn]
        if red:
            named = ", ".join(f"{i.area} {i.subject}" for i in red[:8]) + (f" and {len(red) - 8} more" if len(red) > 8 else "")
            return f"preflight of {self.cutover}: {len(red)} red ({named})"
        return f"preflight of {self.cutover}: all {len(self.items)} checks green" + (f" ({len(warn)} amber)" if warn else "")

    def markdown(self) -> str:
        verdict = "RED: the cutover would stop before its first freeze" if self.red else "green"
        lines = [f"# Preflight of {self.cutover}: {verdict}", "", "| | check | subject | detail |", "|---|---|---|---|"]
        for item in self.items:
            lines.append(f"| {SYMBOL[item.status]} | {item.area} | {_cell(item.subject)} | {_cell(item.detail)} |")
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        width = max([len(i.area) for i in self.items] + [5])
        subject = max([len(i.subject) for i in self.items] + [7])
        lines = [f"{'':<6} {'check':<{width}}  {'subject':<{subject}}  detail"]
        for item in self.items:
            lines.append(f"{SYMBOL[item.status]:<6} {item.area:<{width}}  {item.subject:<{subject}}  {item.detail}")
        lines.append(self.summary())
        return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
