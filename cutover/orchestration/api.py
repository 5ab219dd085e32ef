"""Talking to a Prefect API chosen by address: health, the UI links that belong to it, and
a client (with Prefect's settings pointed at it, so Prefect's own helpers such as
``run_deployment`` and ``resume_flow_run`` use the same server)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from cutover.orchestration import OrchestrationError

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient


def ui_url_for(api_url: str) -> str:
    """The UI address that belongs to an API address (``.../api`` -> ``...``)."""
    return api_url.rstrip("/").removesuffix("/api")


def flow_run_link(ui_url: str, flow_run_id: str) -> str:
    """The UI page of one flow run."""
    return f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"


def api_is_healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    """True when ``<api_url>/health`` answers 200 now."""
    try:
        response = httpx.get(api_url.rstrip("/") + "/health", timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def configured_api_url(explicit: str | None = None) -> str:
    """The API to use: ``explicit``, else PREFECT_API_URL from the environment or the
    active Prefect profile. OrchestrationError when none is set (Prefect would otherwise
    start a throw-away ephemeral server that no worker listens to)."""
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"].rstrip("/")
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise OrchestrationError(
            "no Prefect API configured: pass --api URL or set PREFECT_API_URL "
            "(`cutover demo --keep` starts a local server and prints its address)"
        )
    return str(url).rstrip("/")


def require_healthy(api_url: str) -> None:
    """OrchestrationError with a one-line reason when the API does not answer."""
    if not api_is_healthy(api_url, timeout_s=5):
        raise OrchestrationError(f"the Prefect API at {api_url} is not reachable (GET /health failed)")


@contextmanager
def prefect_client(api_url: str) -> Iterator[SyncPrefectClient]:
    """A synchronous Prefect client for ``api_url``; inside the block every Prefect helper
    in this thread talks to that API too."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client
