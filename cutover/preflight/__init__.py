"""Preflight: everything a cutover needs, checked before anything is frozen.

Meant for T-2 days and run again, cheaply, as the first step of every cutover run: every
secret resolvable where the steps run, every PostgreSQL endpoint reachable with the
privileges its steps need, client tools that fit the servers, SSH with the pinned host
key, disk for the dumps, the DNS API and each record's current value and TTL, the HTTP
endpoints of the actions, the window, and the TTL lowering. Read-only: nothing here
changes the estate (lowering TTLs is :func:`cutover.phases.ttl.lower_ttls`, on request).
"""

from cutover.preflight.items import Item, Report, Status
from cutover.preflight.run import preflight

__all__ = ["Item", "Report", "Status", "preflight"]
