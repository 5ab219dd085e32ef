"""Turn a runbook's sites into adapter endpoints, resolving secret references on use."""

from __future__ import annotations

import functools
import os
import ssl
from typing import Literal

import structlog

from cutover.dns.powerdns import PowerDnsProvider
from cutover.errors import PermanentStepError
from cutover.postgres.endpoint import PgEndpoint
from cutover.runbook.model import Runbook
from cutover.runbook.references import UnresolvedSecret, resolve
from cutover.ssh.target import SshTarget

log = structlog.get_logger()


def secret(reference: str | None, where: str) -> str | None:
    """The value behind a reference; a missing one is a permanent error naming ``where``."""
    if reference is None:
        return None
    try:
        return resolve(reference)
    except UnresolvedSecret as exc:
        raise PermanentStepError(f"{where}: {exc}") from None


def postgres(runbook: Runbook, site_name: str, login: Literal["migration", "smoke"] = "migration") -> PgEndpoint:
    """The site's PostgreSQL server as the migration role (``user``), or for ``smoke``
    checks as ``smoke_user`` where the site names one (else as ``user`` too)."""
    site = runbook.sites[site_name].postgres
    if site is None:
        raise PermanentStepError(f"site {site_name} has no postgres endpoint")
    if login == "smoke" and site.smoke_user is not None:
        user, password = site.smoke_user, secret(site.smoke_password, f"sites.{site_name}.postgres.smoke_password")
    else:
        user, password = site.user, secret(site.password, f"sites.{site_name}.postgres.password")
    return PgEndpoint(
        host=site.host,
        port=site.port,
        user=user,
        password=password,
        sslmode=site.sslmode,
        bin_dir=site.bin_dir,
        sslrootcert=site.ca_bundle,
    )


def ssh(runbook: Runbook, site_name: str) -> SshTarget:
    site = runbook.sites[site_name].ssh
    if site is None:
        raise PermanentStepError(f"site {site_name} has no ssh endpoint")
    return SshTarget(
        host=site.host,
        port=site.port,
        user=site.user,
        private_key=secret(site.key, f"sites.{site_name}.ssh.key") or "",
        host_key=site.host_key,
    )


def tls_verify(runbook: Runbook, what: str) -> ssl.SSLContext | bool:
    """How an HTTPS request of the run checks the server (httpx's ``verify``): against the
    runbook's pinned CA bundle (``tls.ca_bundle``), else httpx's default trust (certifi's
    bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``); not at all only when the runbook says
    ``tls.insecure_skip_verify``, which is logged as a warning naming ``what`` every time. A
    bundle that cannot be read is a permanent error."""
    if runbook.tls.insecure_skip_verify:
        log.warning("tls_verification_off", what=what, setting="tls.insecure_skip_verify")
        return False
    bundle = runbook.tls.ca_bundle
    if bundle is None:
        variables = {name: os.environ.get(name) for name in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        try:
            return _trust(None, *variables.values())
        except (OSError, ssl.SSLError) as exc:
            named = ", ".join(f"{name}={value}" for name, value in variables.items() if value) or "certifi's bundle"
            raise PermanentStepError(f"the default CA trust ({named}) cannot be loaded: {exc}") from None
    try:
        seen = os.stat(bundle)
        return _trust(bundle, str(seen.st_mtime_ns), str(seen.st_size))
    except (OSError, ssl.SSLError) as exc:
        raise PermanentStepError(f"tls.ca_bundle {bundle}: cannot be read as PEM certificates: {exc}") from None


@functools.lru_cache(maxsize=8)
def _trust(bundle: str | None, *version: str | None) -> ssl.SSLContext:
    # One context per trust source and process, shared by every request (an SSLContext is
    # safe to share between threads): making one with certifi's bundle costs about 36 ms of CPU,
    # which every HTTP check paid when each made its own. ``version`` (the bundle file's
    # mtime and size, or the SSL_CERT_* variables) makes a changed source load again.
    if bundle is None:
        import httpx

        return httpx.create_ssl_context()
    return ssl.create_default_context(cafile=bundle)


def dns_provider(runbook: Runbook) -> PowerDnsProvider:
    import httpx

    from cutover.dns.powerdns import TIMEOUT_S

    if runbook.dns is None:
        raise PermanentStepError("the runbook has no dns section")
    return PowerDnsProvider(
        api_url=runbook.dns.api,
        api_key=secret(runbook.dns.api_key, "dns.api_key") or "",
        zone=runbook.dns.zone,
        server_id=runbook.dns.server_id,
        client=httpx.Client(timeout=TIMEOUT_S, verify=tls_verify(runbook, "dns api")),
        owns_client=True,
    )


def nameserver(runbook: Runbook) -> tuple[str, int]:
    assert runbook.dns is not None
    host, _, port = runbook.dns.nameserver.rpartition(":")
    return host, int(port)
