"""Running cutovers on a real Prefect server, from deployments.

``server`` starts and stops a local Prefect server (API and UI) whose database lives in a
given directory; ``deployments`` applies ``prefect.yaml`` and ensures the work pool;
``worker`` runs a process worker with the environment the flows need; ``follow`` creates a
flow run of a deployment and follows it in the terminal until it ends.

Every process started here is recognised later by a marker in its environment
(``owned_process``), never by its name, so stopping one never touches somebody else's.
"""

from __future__ import annotations

from cutover.errors import CutoverError


class OrchestrationError(CutoverError):
    """The Prefect server, the worker or a deployment could not be started, reached or applied."""
