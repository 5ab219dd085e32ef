"""Prefect tasks: one module per runbook phase, each a thin wrapper over ``cutover.phases``.

Every task takes the runbook path, its step id and the run key (the flow run id, which a
retry keeps), loads the runbook (once per process), and calls one library function inside
``run_step``. Retries, timeouts and caching are set by the flow from the runbook.
"""
