"""A fingerprint of what one step depends on in the runbook, for its cache key.

Fixing a smoke check and retrying must not re-export every database, so each step hashes
only the parts of the runbook its phase reads (``PhaseSpec.inputs``): a database step its
database and both sites, a freeze its actions and databases, a DNS step its records and
the DNS section.
"""

from __future__ import annotations

import hashlib
import json

from cutover.plan.build import Step
from cutover.plan.phases import PHASES
from cutover.runbook.model import Runbook


def step_inputs(runbook: Runbook, step: Step) -> str:
    relevant = [step.phase, PHASES[step.phase].inputs(runbook, step)]
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]
