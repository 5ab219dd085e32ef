"""Run a runbook's actions and checks (``http``, ``sql``, ``ssh``) and report each result.

Used for freeze/unfreeze/start/stop/finalize actions and for smoke and post-switch checks.
A failed expectation raises a StepError that says which action, what was expected and
what came back; a result never contains a secret (headers are not echoed).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from cutover.errors import PermanentStepError, StepError, TransientStepError
from cutover.phases import endpoints
from cutover.results import ActionOutcome
from cutover.runbook.model import Action, HttpStep, Runbook, SqlStep, SshStep

log = structlog.get_logger()

Resolver = Callable[[str], str]
"""Maps a host name to the address to connect to (post-switch checks ask our DNS)."""


def run_actions(
    runbook: Runbook, actions: list[Action], *, what: str, timeout_s: float | None = None, checks: bool = False
) -> list[ActionOutcome]:
    """Run every action in order; stop at the first failure (raised). ``checks``: these are
    checks (smoke), whose SQL only reads (:func:`sql_query` with ``read_only``)."""
    return [
        run_action(runbook, action, label=f"{what}[{index}] {action.kind}", timeout_s=timeout_s, checks=checks)
        for index, action in enumerate(actions)
    ]


def run_action(
    runbook: Runbook, action: Action, *, label: str, timeout_s: float | None = None, checks: bool = False
) -> ActionOutcome:
    timeout = timeout_s or runbook.defaults.check_timeout_s
    if action.http is not None:
        return http_request(
            action.http, label=label, timeout_s=action.http.timeout_s or timeout, verify=endpoints.tls_verify(runbook, label)
        )
    if action.sql is not None:
        return sql_query(runbook, action.sql, label=label, read_only=checks)
    assert action.ssh is not None
    return ssh_command(runbook, action.ssh, label=label, timeout_s=action.ssh.timeout_s or timeout)


def http_request(
    step: HttpStep, *, label: str, timeout_s: float, resolver: Resolver | None = None, verify: ssl.SSLContext | bool = True
) -> ActionOutcome:
    """Send the request and check status, text and latency. With ``resolver``, the URL's host
    is looked up through it and the request goes to that address with the original Host
    (and, over HTTPS, the original name for SNI and the certificate check). ``verify``: how
    the server's certificate is checked (:func:`cutover.phases.endpoints.tls_verify`)."""
    url = step.url
    headers = {name: _header_value(name, value, label) for name, value in step.headers.items()}
    parts = urlsplit(url)
    address = None
    extensions: dict[str, Any] = {}
    if resolver is not None and parts.hostname:
        address = resolver(parts.hostname)
        netloc = address + (f":{parts.port}" if parts.port else "")
        headers["Host"] = parts.netloc
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        if parts.scheme == "https":
            extensions["sni_hostname"] = parts.hostname
    expected = step.expect_status if isinstance(step.expect_status, list) else [step.expect_status]
    start = time.perf_counter()
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, verify=verify) as client:
            response = client.request(step.method, url, headers=headers, json=step.json_body, extensions=extensions)
    except httpx.HTTPError as exc:
        raise TransientStepError(f"{label}: {step.method} {step.url}: {type(exc).__name__}: {exc}") from None
    latency_ms = (time.perf_counter() - start) * 1000
    result = ActionOutcome(
        action=label, kind="http", url=step.url, status=response.status_code, latency_ms=round(latency_ms, 1), address=address
    )
    if response.status_code not in expected:
        raise TransientStepError(
            f"{label}: {step.method} {step.url} answered {response.status_code}, expected {_one_of(expected)}"
            + _snippet(response.text)
        )
    if step.expect_text is not None and step.expect_text not in response.text:
        raise TransientStepError(f"{label}: {step.url} does not contain {step.expect_text!r}" + _snippet(response.text))
    if step.max_latency_ms is not None and latency_ms > step.max_latency_ms:
        raise TransientStepError(f"{label}: {step.url} took {latency_ms:.0f} ms, limit {step.max_latency_ms:.0f} ms")
    log.info("http_checked", action=label, url=step.url, status=result.status, latency_ms=result.latency_ms, address=address)
    return result


def sql_query(runbook: Runbook, step: SqlStep, *, label: str, read_only: bool = False) -> ActionOutcome:
    """Run the query on the site's database; with ``expect``, the first column of the
    first row must equal it (compared as text when the types differ).

    ``read_only`` (smoke checks): the query runs in a READ ONLY transaction that is rolled
    back, as the site's ``smoke_user`` where it names one, so that no check can write
    whatever the query says (``validate`` also refuses what is plainly not a read, but it is
    not a parser). Actions (freeze, start, finalize) run in autocommit as the site's user."""
    from cutover.postgres.endpoint import connect

    endpoint = endpoints.postgres(runbook, step.site, login="smoke" if read_only else "migration")
    with connect(endpoint, step.database, autocommit=not read_only) as conn:
        if read_only:
            conn.read_only = True  # psycopg starts the transaction with BEGIN READ ONLY
        try:
            cursor = conn.execute(step.query)
            row = cursor.fetchone() if cursor.description is not None else None  # an action may return no rows
        except Exception as exc:  # psycopg errors: report the server's message, not a traceback
            raise PermanentStepError(f"{label}: query on {step.site}/{step.database} failed: {exc}".strip()) from None
        finally:
            if read_only:
                conn.rollback()
    value = row[0] if row else None
    result = ActionOutcome(action=label, kind="sql", site=step.site, database=step.database, value=_plain(value))
    if step.expect is not None and not _equal(value, step.expect):
        raise TransientStepError(f"{label}: {step.site}/{step.database} returned {value!r}, expected {step.expect!r}")
    log.info("sql_checked", action=label, site=step.site, database=step.database, value=result.value)
    return result


def ssh_command(runbook: Runbook, step: SshStep, *, label: str, timeout_s: float) -> ActionOutcome:
    from cutover.ssh.remote import run_remote
    from cutover.ssh.target import connect

    client = connect(endpoints.ssh(runbook, step.site))
    try:
        outcome = run_remote(client, step.command, timeout_s=timeout_s)
    finally:
        client.close()
    if outcome.exit_status != step.expect_exit:
        raise TransientStepError(
            f"{label}: command on {step.site} exited {outcome.exit_status}, expected {step.expect_exit}"
            + _snippet(outcome.stderr_tail if isinstance(outcome.stderr_tail, str) else str(outcome.stderr_tail))
        )
    result = ActionOutcome(action=label, kind="ssh", site=step.site, exit_status=outcome.exit_status)
    log.info("ssh_checked", action=label, site=step.site, exit_status=outcome.exit_status)
    return result


def _header_value(name: str, value: str, label: str) -> str:
    if value.startswith(("env:", "secret:")):
        return endpoints.secret(value, f"{label} header {name}") or ""
    return value


def _one_of(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else "one of " + ", ".join(map(str, values))


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return f" ({text[:200]})" if text else ""


def _equal(value: Any, expected: Any) -> bool:
    return value == expected or str(value) == str(expected)


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


__all__ = ["Resolver", "StepError", "http_request", "run_action", "run_actions", "sql_query", "ssh_command"]
