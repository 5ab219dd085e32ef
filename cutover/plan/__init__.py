"""The planner: runbook -> DAG of named steps, critical path, renderings."""

from cutover.plan.build import Plan, Step, build_plan, choose_method, gate_id, step_id
from cutover.plan.graph import CycleError, critical_path, topological_order

__all__ = [
    "CycleError",
    "Plan",
    "Step",
    "build_plan",
    "choose_method",
    "critical_path",
    "gate_id",
    "step_id",
    "topological_order",
]
