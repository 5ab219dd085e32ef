"""The report as JSON: the form its digest is computed from (see cutover.report.digest)."""

from __future__ import annotations

import json

from cutover.report.model import Report


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
