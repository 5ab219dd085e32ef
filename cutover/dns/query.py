"""Asking one DNS server one question, through dnspython: A, AAAA and CNAME.

Used to confirm a switch at the authoritative server and to resolve names the way a user
would after it. dnspython builds the query with a random id, ignores anything on the
socket that is not the answer to it, and asks again over TCP when the UDP answer was
truncated; here its answer becomes the values the switch compares, following CNAMEs in
the same answer, and its errors become our transient and permanent ones.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from cutover.errors import PermanentStepError, TransientStepError

SUPPORTED = ("A", "AAAA", "CNAME")
_MAX_CHAIN = 16  # a CNAME chain longer than this is a loop


@dataclass(frozen=True)
class QueryAnswer:
    """The server's answer: the values of records of the asked type (for A/AAAA, also those
    reached through a CNAME in the same answer), the lowest TTL among them (None when
    there are none), the response code (``"NOERROR"``, ``"NXDOMAIN"``, ...), and the CNAME
    targets met on the way (``aliases``)."""

    values: tuple[str, ...]
    ttl: int | None
    rcode: str
    aliases: tuple[str, ...] = ()


def answer_for(message: dns.message.Message, name: str, rtype: str) -> QueryAnswer:
    """The values for ``name``/``rtype`` in ``message``, following CNAMEs within it."""
    wanted = dns.rdatatype.from_text(rtype)
    current = dns.name.from_text(name)
    aliases: list[str] = []
    values: list[str] = []
    ttls: list[int] = []
    for _ in range(_MAX_CHAIN):
        hits = [rrset for rrset in message.answer if rrset.name == current and rrset.rdtype == wanted]
        if hits:
            for rrset in hits:
                values += [rdata.to_text() for rdata in rrset]
                ttls.append(rrset.ttl)
            break
        cnames = [rrset for rrset in message.answer if rrset.name == current and rrset.rdtype == dns.rdatatype.CNAME]
        if not cnames:
            break
        target = next(iter(cnames[0])).target
        if target.to_text() in aliases:
            break
        aliases.append(target.to_text())
        ttls.append(cnames[0].ttl)
        current = target
    return QueryAnswer(
        values=tuple(values), ttl=min(ttls) if values else None, rcode=dns.rcode.to_text(message.rcode()), aliases=tuple(aliases)
    )


def query(name: str, rtype: str = "A", *, server_host: str, server_port: int = 53, timeout_s: float = 2.0) -> QueryAnswer:
    """Ask ``server_host:server_port`` for ``name``/``rtype`` (A, AAAA or CNAME).

    Response codes are returned, not raised (NXDOMAIN is an answer). Raises
    TransientStepError when the server does not answer in time or refuses the connection,
    PermanentStepError for an unsupported type, a name that cannot be asked, or a
    malformed answer.
    """
    if rtype not in SUPPORTED:
        raise PermanentStepError(f"DNS queries for {rtype} records are not supported ({', '.join(SUPPORTED)})")
    where = f"{server_host}:{server_port}"
    try:
        question = dns.message.make_query(name, rtype, use_edns=False)
        question.flags &= ~dns.flags.RD  # an authoritative server is asked, not a resolver
    except (dns.exception.DNSException, ValueError) as exc:
        raise PermanentStepError(f"DNS name {name!r} cannot be asked: {exc}") from None
    try:
        address = socket.getaddrinfo(server_host, server_port, type=socket.SOCK_DGRAM)[0][4][0]
    except socket.gaierror as exc:
        raise TransientStepError(f"DNS server {where} cannot be resolved: {exc.strerror}") from exc
    try:
        answer, _tcp = dns.query.udp_with_fallback(
            question, str(address), timeout=timeout_s, port=server_port, ignore_unexpected=True, ignore_errors=True
        )
    except dns.exception.Timeout as exc:
        raise TransientStepError(f"DNS query for {name} {rtype} to {where} timed out after {timeout_s:g}s") from exc
    except (dns.exception.FormError, dns.message.BadEDNS, dns.query.BadResponse) as exc:
        raise PermanentStepError(f"DNS answer for {name} {rtype} from {where} is malformed: {exc}") from exc
    except OSError as exc:
        raise TransientStepError(f"DNS query for {name} {rtype} to {where} failed: {exc.strerror or exc}") from exc
    return answer_for(answer, name, rtype)
