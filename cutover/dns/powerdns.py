"""PowerDNS Authoritative as a DNS provider, through its HTTP API (``/api/v1``).

Reading is ``GET /servers/{server}/zones/{zone}`` (the zone with its rrsets); writing is
``PATCH`` on the same URL with one rrset, ``changetype: REPLACE``, which replaces every
record of that name and type at once (204 No Content on success). PowerDNS has no
conditional write, so the expected-value check is a read just before the write: it
catches a hand edit made before the switch, not one made in the same millisecond.
"""

from __future__ import annotations

import urllib.parse
from types import TracebackType
from typing import Any

import httpx
import structlog

from cutover.dns import provider
from cutover.dns.provider import RecordChange, RecordSet
from cutover.errors import PermanentStepError, TransientStepError

log = structlog.get_logger()

TIMEOUT_S = 10.0
SUPPORTED = frozenset({"A", "AAAA", "CNAME", "TXT", "MX", "SRV", "NS", "PTR", "CAA"})


class PowerDnsProvider:
    """A :class:`cutover.dns.provider.DnsProvider` for one zone on a PowerDNS server.

    ``client`` may be given (tests, shared pools); otherwise one is created and closed by
    :meth:`close`. The API key travels only in the ``X-API-Key`` header and never appears
    in a repr, a log line or an error message.
    """

    supports = SUPPORTED

    def __init__(
        self,
        api_url: str,
        api_key: str,
        zone: str,
        server_id: str = "localhost",
        client: httpx.Client | None = None,
        owns_client: bool = False,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self.zone = provider.fqdn(zone)
        self.server_id = server_id
        self._own_client = client is None or owns_client
        self._client = client if client is not None else httpx.Client(timeout=TIMEOUT_S)
        base = self.api_url if self.api_url.endswith("/api/v1") else self.api_url + "/api/v1"
        self._zone_url = f"{base}/servers/{urllib.parse.quote(server_id, safe='')}/zones/{urllib.parse.quote(self.zone, safe='')}"
        self._where = _without_userinfo(self.api_url)

    def __repr__(self) -> str:
        return f"PowerDnsProvider(api_url={self._where!r}, zone={self.zone!r}, server_id={self.server_id!r})"

    def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._own_client:
            self._client.close()

    def __enter__(self) -> PowerDnsProvider:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------

    def get(self, name: str, rtype: str) -> RecordSet | None:
        """The enabled records of ``name``/``rtype`` in the zone, or None when there are none."""
        wanted = provider.fqdn(name)
        if not provider.in_zone(wanted, self.zone):
            raise PermanentStepError(f"{wanted} is not inside the zone {self.zone}")
        # Newer PowerDNS versions filter on these; older ones ignore them, hence the filter below.
        body = self._request("GET", params={"rrset_name": wanted, "rrset_type": rtype}).json()
        for rrset in body.get("rrsets", []):
            if provider.fqdn(rrset.get("name", "")) == wanted and rrset.get("type") == rtype:
                values = tuple(r["content"] for r in rrset.get("records", []) if not r.get("disabled"))
                if not values:
                    return None
                return RecordSet(name=wanted, rtype=rtype, ttl=int(rrset.get("ttl", 0)), values=values)
        return None

    # --- writing ---------------------------------------------------------------------

    def apply(self, change: RecordChange) -> bool:
        """Make the record hold ``change.values``; see :func:`cutover.dns.provider.needs_write`.

        Returns False (and writes nothing) when it already does. Raises UnsafeChange on an
        unexpected current value, PermanentStepError for a change PowerDNS refuses (its
        message included) or that is out of zone/unsupported, TransientStepError when the
        API cannot be reached or fails on its side.
        """
        provider.check(change, zone=self.zone, supports=self.supports)
        name = provider.fqdn(change.name)
        current = self.get(name, change.rtype)
        if not provider.needs_write(current, change):
            log.info("dns_unchanged", name=name, type=change.rtype, values=list(change.values))
            return False
        rrset = {
            "name": name,
            "type": change.rtype,
            "ttl": change.ttl,
            "changetype": "REPLACE",
            "records": [{"content": value, "disabled": False} for value in change.values],
        }
        self._request("PATCH", json={"rrsets": [rrset]})
        log.info(
            "dns_record_replaced",
            name=name,
            type=change.rtype,
            ttl=change.ttl,
            old=list(current.values) if current else [],
            new=list(change.values),
        )
        return True

    # --- HTTP --------------------------------------------------------------------------

    def _request(self, method: str, **kwargs: Any) -> httpx.Response:
        what = f"PowerDNS API {method} zone {self.zone} at {self._where}"
        try:
            response = self._client.request(method, self._zone_url, headers={"X-API-Key": self._api_key}, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientStepError(f"{what}: timed out") from exc
        except httpx.TransportError as exc:  # refused, reset, DNS failure, protocol error
            raise TransientStepError(f"{what}: {exc or type(exc).__name__}") from exc
        status = response.status_code
        if status < 300:
            return response
        reason = _error_text(response)
        if status >= 500:
            raise TransientStepError(f"{what}: server error {status}: {reason}")
        if status in (401, 403):
            raise PermanentStepError(f"{what}: the API key was refused ({status} {reason})")
        if status == 404:
            raise PermanentStepError(f"{what}: not found ({reason}); check the zone and server id {self.server_id!r}")
        raise PermanentStepError(f"{what}: refused with {status}: {reason}")


def _error_text(response: httpx.Response) -> str:
    """PowerDNS's own explanation: ``{"error": ...}`` when JSON, else the body's first line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip().splitlines()
    return text[0][:300] if text else response.reason_phrase


def _without_userinfo(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
