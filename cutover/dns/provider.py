"""What a DNS provider is to Cutover, and the safety rules every provider's apply follows.

Providers declare the record types they support, so an unsupported change is refused by
:func:`problems` before anything is applied (at plan time), never halfway through. A
change carries the values the switch expects to find (``expect_current``): when the
record holds anything else, somebody edited it by hand and the switch refuses
(:class:`UnsafeChange`) instead of clobbering the edit. A record already holding the
desired values is success, so apply may be repeated.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cutover.errors import PermanentStepError, UnsafeChange

Values = tuple[str, ...]


@dataclass(frozen=True)
class RecordSet:
    """All records of one name and type: ``name`` fully qualified with a trailing dot."""

    name: str
    rtype: str
    ttl: int
    values: Values


@dataclass(frozen=True)
class RecordChange:
    """Make ``name``/``rtype`` hold exactly ``values`` with ``ttl``.

    ``expect_current``: the values the record must hold now for the change to go ahead
    (``()`` means "must not exist"); None means no expectation. Holding the desired values
    already is always fine.
    """

    name: str
    rtype: str
    ttl: int
    values: Values
    expect_current: Values | None = None


@runtime_checkable
class DnsProvider(Protocol):
    """A DNS service Cutover can read and change records in."""

    supports: frozenset[str]
    zone: str

    def get(self, name: str, rtype: str) -> RecordSet | None:
        """The record set, or None when there is none."""
        ...

    def apply(self, change: RecordChange) -> bool:
        """Make the change; True when something was written, False when the record was
        already as desired. Raises UnsafeChange when the current values are neither the
        expected nor the desired ones."""
        ...


def fqdn(name: str) -> str:
    """``name`` in canonical form: lower case, one trailing dot."""
    return name.strip().rstrip(".").lower() + "."


def in_zone(name: str, zone: str) -> bool:
    """True when ``name`` is ``zone`` itself or a name below it (label-wise, so
    ``evilwerkendam.test.`` is not inside ``werkendam.test.``)."""
    name, zone = fqdn(name), fqdn(zone)
    return name == zone or name.endswith("." + zone)


def normalise(rtype: str, values: Values | list[str]) -> Values:
    """Values in a comparable form: addresses in canonical notation, names fully
    qualified and lower case, sorted (a record set has no order)."""
    out = []
    for value in values:
        value = value.strip()
        if rtype in ("A", "AAAA"):
            try:
                value = str(ipaddress.ip_address(value))
            except ValueError:
                pass  # the provider will refuse it with its own message
        elif rtype in ("CNAME", "NS", "PTR"):
            value = fqdn(value)
        out.append(value)
    return tuple(sorted(set(out)))


def problems(change: RecordChange, *, zone: str, supports: frozenset[str]) -> list[str]:
    """Why ``change`` cannot be applied by a provider for ``zone`` supporting ``supports``;
    empty when it can. Pure, for plan-time checks."""
    found = []
    if change.rtype not in supports:
        found.append(f"record type {change.rtype} is not supported here (supported: {', '.join(sorted(supports))})")
    if not in_zone(change.name, zone):
        found.append(f"{change.name} is not inside the zone {fqdn(zone)}")
    if not change.values:
        found.append(f"{change.name} {change.rtype}: no values given (deleting records is not a switch)")
    if change.rtype == "CNAME" and len(change.values) > 1:
        found.append(f"{change.name} CNAME: a CNAME holds exactly one value")
    if not 1 <= change.ttl <= 604800:
        found.append(f"{change.name} {change.rtype}: ttl {change.ttl} is out of range")
    return found


def check(change: RecordChange, *, zone: str, supports: frozenset[str]) -> None:
    """Raise PermanentStepError listing :func:`problems`, if any."""
    found = problems(change, zone=zone, supports=supports)
    if found:
        raise PermanentStepError("; ".join(found))


def needs_write(current: RecordSet | None, change: RecordChange) -> bool:
    """Whether applying ``change`` over ``current`` writes anything.

    False when the record already holds the desired values and TTL. Raises UnsafeChange
    when ``expect_current`` is set and the record holds neither those nor the desired values.
    """
    desired = normalise(change.rtype, change.values)
    have = normalise(change.rtype, current.values) if current is not None else ()
    if have == desired:
        return current is None or current.ttl != change.ttl
    if change.expect_current is not None and have != normalise(change.rtype, change.expect_current):
        expected = list(change.expect_current) or "no record"
        raise UnsafeChange(
            f"{fqdn(change.name)} {change.rtype} holds {list(have) or 'no record'}, expected {expected} "
            f"(or already {list(desired)}); it was changed by someone else, refusing to overwrite it"
        )
    return True
