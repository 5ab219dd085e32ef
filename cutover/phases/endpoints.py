"""Turn a runbook's sites into adapter endpoints, resolving secret references on use."""

from __future__ import annotations

from cutover.dns.powerdns import PowerDnsProvider
from cutover.errors import PermanentStepError
from cutover.postgres.endpoint import PgEndpoint
from cutover.runbook.model import Runbook
from cutover.runbook.references import UnresolvedSecret, resolve
from cutover.ssh.target import SshTarget


def secret(reference: str | None, where: str) -> str | None:
    """The value behind a reference; a missing one is a permanent error naming ``where``."""
    if reference is None:
        return None
    try:
        return resolve(reference)
    except UnresolvedSecret as exc:
        raise PermanentStepError(f"{where}: {exc}") from None


def postgres(runbook: Runbook, site_name: str) -> PgEndpoint:
    site = runbook.sites[site_name].postgres
    if site is None:
        raise PermanentStepError(f"site {site_name} has no postgres endpoint")
    return PgEndpoint(
        host=site.host,
        port=site.port,
        user=site.user,
        password=secret(site.password, f"sites.{site_name}.postgres.password"),
        sslmode=site.sslmode,
        bin_dir=site.bin_dir,
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


def dns_provider(runbook: Runbook) -> PowerDnsProvider:
    if runbook.dns is None:
        raise PermanentStepError("the runbook has no dns section")
    return PowerDnsProvider(
        api_url=runbook.dns.api,
        api_key=secret(runbook.dns.api_key, "dns.api_key") or "",
        zone=runbook.dns.zone,
        server_id=runbook.dns.server_id,
    )


def nameserver(runbook: Runbook) -> tuple[str, int]:
    assert runbook.dns is not None
    host, _, port = runbook.dns.nameserver.rpartition(":")
    return host, int(port)
