"""A fingerprint of what one step depends on in the runbook, for its cache key.

Fixing a smoke check and retrying must not re-export every database, so each step hashes
only the parts of the runbook it reads: a database step its database and both sites, a
freeze its actions and databases, a DNS step its records and the DNS section.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cutover.plan.build import Step
from cutover.runbook.model import Runbook


def step_inputs(runbook: Runbook, step: Step) -> str:
    return hashlib.sha256(json.dumps(_relevant(runbook, step), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True) if model is not None else None


def _relevant(runbook: Runbook, step: Step) -> Any:
    if step.gate is not None:
        return [_dump(runbook.gate(step.gate)), {name: runbook.teams[name] for name in sorted(runbook.teams)}]
    app = runbook.application(step.application)
    if step.database is not None:
        db = app.database(step.database)
        return [step.method, _dump(db), _dump(runbook.sites.get(db.from_)), _dump(runbook.sites.get(db.to))]
    section = {
        "freeze": lambda: [[_dump(a) for a in app.freeze], [_dump(d) for d in app.databases]],
        "files": lambda: [_dump(f) for f in app.files],
        "dns_switch": lambda: [[_dump(r) for r in app.dns], _dump(runbook.dns)],
    }.get(step.phase, lambda: [_dump(a) for a in getattr(app, step.phase, [])])
    return [step.phase, section()]
