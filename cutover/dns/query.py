"""Asking one DNS server one question: a small stdlib client (RFC 1035) for A, AAAA and CNAME.

Used to confirm a switch at the authoritative server and to resolve names the way a user
would after it. The query has a random id; an answer counts only when its id and question
match the query (anything else on the socket is ignored until the timeout), and a
truncated UDP answer is asked again over TCP.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
import time
from dataclasses import dataclass

from cutover.errors import PermanentStepError, TransientStepError

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
TYPE_NAMES = {number: name for name, number in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
CLASS_IN = 1
_HEADER = struct.Struct("!HHHHHH")
_MAX_POINTERS = 64


class MalformedAnswer(ValueError):
    """The bytes are not a well-formed DNS message."""


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


@dataclass(frozen=True)
class Record:
    name: str
    rtype: int
    rclass: int
    ttl: int
    value: str


@dataclass(frozen=True)
class Message:
    id: int
    flags: int
    question: tuple[str, int, int] | None
    answers: tuple[Record, ...]

    @property
    def truncated(self) -> bool:
        return bool(self.flags & 0x0200)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def rcode(self) -> str:
        code = self.flags & 0x000F
        return RCODES.get(code, str(code))


# --- encoding ------------------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    """``name`` as a sequence of length-prefixed labels ending in the root label."""
    out = bytearray()
    for label in name.rstrip(".").split(".") if name.rstrip(".") else []:
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise PermanentStepError(f"{name!r} is not a valid DNS name (label of {len(raw)} bytes)")
        out += bytes([len(raw)]) + raw
    out += b"\x00"
    if len(out) > 255:
        raise PermanentStepError(f"{name!r} is longer than a DNS name may be")
    return bytes(out)


def build_query(query_id: int, name: str, rtype: str) -> bytes:
    """A standard query without recursion desired (the servers asked are authoritative)."""
    return _HEADER.pack(query_id, 0, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", TYPES[rtype], CLASS_IN)


# --- decoding ------------------------------------------------------------------------------


def decode_name(packet: bytes, offset: int) -> tuple[str, int]:
    """The name at ``offset`` (following compression pointers) and the offset after it in
    the original position. Pointer loops and overruns raise MalformedAnswer."""
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    while True:
        if offset >= len(packet):
            raise MalformedAnswer("name runs past the end of the message")
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(packet):
                raise MalformedAnswer("truncated compression pointer")
            target = ((length & 0x3F) << 8) | packet[offset + 1]
            if end is None:
                end = offset + 2
            jumps += 1
            if jumps > _MAX_POINTERS or target >= len(packet):
                raise MalformedAnswer("compression pointer loop or out of range")
            offset = target
            continue
        if length & 0xC0:
            raise MalformedAnswer(f"unknown label type {length:#x}")
        offset += 1
        if length == 0:
            break
        if offset + length > len(packet):
            raise MalformedAnswer("label runs past the end of the message")
        labels.append(packet[offset : offset + length].decode("ascii", "replace").lower())
        offset += length
    return ".".join(labels) + ".", end if end is not None else offset


def _rdata(packet: bytes, rtype: int, start: int, length: int) -> str:
    data = packet[start : start + length]
    if rtype == TYPES["A"]:
        if length != 4:
            raise MalformedAnswer("A record of wrong length")
        return str(ipaddress.IPv4Address(data))
    if rtype == TYPES["AAAA"]:
        if length != 16:
            raise MalformedAnswer("AAAA record of wrong length")
        return str(ipaddress.IPv6Address(data))
    if rtype in (TYPES["CNAME"], TYPES["NS"], TYPES["PTR"]):
        name, after = decode_name(packet, start)
        if after > start + length:
            raise MalformedAnswer("name runs past its record")
        return name
    return data.hex()


def parse_message(packet: bytes) -> Message:
    """The header, first question and answer records of a DNS message."""
    if len(packet) < _HEADER.size:
        raise MalformedAnswer("shorter than a DNS header")
    query_id, flags, qdcount, ancount, _nscount, _arcount = _HEADER.unpack_from(packet)
    offset = _HEADER.size
    question = None
    for index in range(qdcount):
        qname, offset = decode_name(packet, offset)
        if offset + 4 > len(packet):
            raise MalformedAnswer("question runs past the end of the message")
        qtype, qclass = struct.unpack_from("!HH", packet, offset)
        offset += 4
        if index == 0:
            question = (qname, qtype, qclass)
    answers = []
    for _ in range(ancount):
        name, offset = decode_name(packet, offset)
        if offset + 10 > len(packet):
            raise MalformedAnswer("record header runs past the end of the message")
        rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", packet, offset)
        offset += 10
        if offset + rdlength > len(packet):
            raise MalformedAnswer("record data runs past the end of the message")
        answers.append(Record(name, rtype, rclass, ttl, _rdata(packet, rtype, offset, rdlength)))
        offset += rdlength
    return Message(query_id, flags, question, tuple(answers))


def answer_for(message: Message, name: str, rtype: str) -> QueryAnswer:
    """The values for ``name``/``rtype`` in ``message``, following CNAMEs within it."""
    wanted = TYPES[rtype]
    current = name.rstrip(".").lower() + "."
    aliases: list[str] = []
    values: list[str] = []
    ttls: list[int] = []
    for _ in range(16):  # a CNAME chain longer than this is a loop
        matched = [r for r in message.answers if r.name == current and r.rclass == CLASS_IN]
        hits = [r for r in matched if r.rtype == wanted]
        if hits:
            values += [r.value for r in hits]
            ttls += [r.ttl for r in hits]
            break
        cnames = [r for r in matched if r.rtype == TYPES["CNAME"]]
        if not cnames or cnames[0].value in aliases:
            break
        current = cnames[0].value
        aliases.append(current)
        ttls.append(cnames[0].ttl)
    return QueryAnswer(values=tuple(values), ttl=min(ttls) if values else None, rcode=message.rcode, aliases=tuple(aliases))


# --- asking --------------------------------------------------------------------------------


def query(
    name: str,
    rtype: str = "A",
    *,
    server_host: str,
    server_port: int = 53,
    timeout_s: float = 2.0,
) -> QueryAnswer:
    """Ask ``server_host:server_port`` for ``name``/``rtype`` (A, AAAA or CNAME).

    Response codes are returned, not raised (NXDOMAIN is an answer). Raises
    TransientStepError when the server does not answer in time or refuses the connection,
    PermanentStepError for an unsupported type or a malformed answer.
    """
    if rtype not in ("A", "AAAA", "CNAME"):
        raise PermanentStepError(f"DNS queries for {rtype} records are not supported (A, AAAA, CNAME)")
    where = f"{server_host}:{server_port}"
    query_id = secrets.randbits(16)
    packet = build_query(query_id, name, rtype)
    expected_question = (name.rstrip(".").lower() + ".", TYPES[rtype], CLASS_IN)
    family, address = _address(server_host, server_port, where)
    try:
        message = _ask_udp(packet, family, address, query_id, expected_question, timeout_s)
        if message.truncated:
            message = _ask_tcp(packet, family, address, query_id, expected_question, timeout_s)
    except (socket.timeout, TimeoutError) as exc:
        raise TransientStepError(f"DNS query for {name} {rtype} to {where} timed out after {timeout_s:g}s") from exc
    except MalformedAnswer as exc:
        raise PermanentStepError(f"DNS answer for {name} {rtype} from {where} is malformed: {exc}") from exc
    except OSError as exc:
        raise TransientStepError(f"DNS query for {name} {rtype} to {where} failed: {exc.strerror or exc}") from exc
    return answer_for(message, name, rtype)


def _address(host: str, port: int, where: str) -> tuple[int, tuple[str, int]]:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise TransientStepError(f"DNS server {where} cannot be resolved: {exc.strerror}") from exc
    family, _type, _proto, _canon, sockaddr = info[0]
    return family, (sockaddr[0], sockaddr[1])


def _matches(message: Message, query_id: int, question: tuple[str, int, int]) -> bool:
    return message.is_response and message.id == query_id and message.question == question


def _ask_udp(
    packet: bytes, family: int, address: tuple[str, int], query_id: int, question: tuple[str, int, int], timeout_s: float
) -> Message:
    deadline = time.monotonic() + timeout_s
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # connect() makes the kernel drop datagrams from other sources and reports an
        # ICMP port-unreachable as ConnectionRefusedError.
        sock.connect(address)
        sock.send(packet)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            data = sock.recv(65535)
            try:
                message = parse_message(data)
            except MalformedAnswer:
                continue  # not the answer to our question; keep waiting for it
            if _matches(message, query_id, question):
                return message


def _ask_tcp(
    packet: bytes, family: int, address: tuple[str, int], query_id: int, question: tuple[str, int, int], timeout_s: float
) -> Message:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(address)
        sock.sendall(struct.pack("!H", len(packet)) + packet)
        (length,) = struct.unpack("!H", _read_exactly(sock, 2))
        message = parse_message(_read_exactly(sock, length))
    if not _matches(message, query_id, question):
        raise MalformedAnswer("TCP answer does not match the question asked")
    return message


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise MalformedAnswer("connection closed in the middle of the answer")
        data += chunk
    return bytes(data)
