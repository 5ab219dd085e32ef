"""The DNS client (dnspython underneath): answers read as the switch needs them, and a tiny
local server that answers with hand-built packets: spoofed or junk answers ignored, a
truncated answer asked again over TCP, silence and closed ports transient."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import dns.message
import pytest

from cutover.dns.query import answer_for, query
from cutover.errors import PermanentStepError, TransientStepError

A, CNAME, AAAA, IN = 1, 5, 28, 1


def header(query_id: int, *, flags: int = 0x8400, qd: int = 1, an: int = 0) -> bytes:
    return struct.pack("!HHHHHH", query_id, flags, qd, an, 0, 0)


def encode_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\x00"


def question(name: str, rtype: int) -> bytes:
    return encode_name(name) + struct.pack("!HH", rtype, IN)


def record(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, IN, ttl, len(rdata)) + rdata


def message(text: str) -> dns.message.Message:
    return dns.message.from_text(text)


def test_cname_chain_is_followed_to_the_address_with_the_lowest_ttl() -> None:
    answer = message(
        """id 7
opcode QUERY
rcode NOERROR
flags QR AA
;QUESTION
www.example.test. IN A
;ANSWER
www.example.test. 300 IN CNAME app.example.test.
app.example.test. 60 IN A 192.0.2.7
"""
    )
    found = answer_for(answer, "www.example.test.", "A")
    assert found.values == ("192.0.2.7",)
    assert found.aliases == ("app.example.test.",)
    assert found.ttl == 60  # the lowest TTL on the way
    assert found.rcode == "NOERROR"
    cname = answer_for(answer, "WWW.Example.Test", "CNAME")
    assert cname.values == ("app.example.test.",) and cname.ttl == 300


def test_a_cname_loop_ends() -> None:
    answer = message(
        """id 1
flags QR AA
;QUESTION
a.example.test. IN A
;ANSWER
a.example.test. 60 IN CNAME b.example.test.
b.example.test. 60 IN CNAME a.example.test.
"""
    )
    assert answer_for(answer, "a.example.test.", "A").values == ()


def test_aaaa_values_are_in_canonical_notation() -> None:
    answer = message("id 1\nflags QR AA\n;QUESTION\nv6.example.test. IN AAAA\n;ANSWER\nv6.example.test. 30 IN AAAA 0:0:0::0:1\n")
    assert answer_for(answer, "v6.example.test.", "AAAA").values == ("::1",)


def test_nxdomain_is_an_answer_without_values() -> None:
    answer = message("id 1\nrcode NXDOMAIN\nflags QR AA\n;QUESTION\ngone.example.test. IN A\n")
    found = answer_for(answer, "gone.example.test.", "A")
    assert (found.values, found.ttl, found.rcode) == ((), None, "NXDOMAIN")


def test_names_with_overlong_labels_cannot_be_asked() -> None:
    with pytest.raises(PermanentStepError, match="cannot be asked"):
        query("x" * 64 + ".example.test.", server_host="127.0.0.1", server_port=9)


# --- against a local server ------------------------------------------------------------------

Responder = Callable[[bytes], list[bytes]]


@pytest.fixture
def dns_server() -> Iterator[Callable[[Responder, Responder | None], int]]:
    """Start a UDP (and optionally TCP) server on one loopback port answering with packets
    built by the test from each query."""
    sockets: list[socket.socket] = []
    stop = threading.Event()

    def start(udp: Responder, tcp: Responder | None = None) -> int:
        usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        usock.bind(("127.0.0.1", 0))
        usock.settimeout(0.1)
        port = usock.getsockname()[1]
        sockets.append(usock)

        def serve_udp() -> None:
            while not stop.is_set():
                try:
                    data, peer = usock.recvfrom(512)
                except (TimeoutError, OSError):
                    continue
                for reply in udp(data):
                    usock.sendto(reply, peer)

        threading.Thread(target=serve_udp, daemon=True).start()
        if tcp is not None:
            tsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tsock.bind(("127.0.0.1", port))
            tsock.listen()
            tsock.settimeout(0.1)
            sockets.append(tsock)

            def serve_tcp() -> None:
                while not stop.is_set():
                    try:
                        conn, _ = tsock.accept()
                    except (TimeoutError, OSError):
                        continue
                    with conn:
                        conn.settimeout(2)
                        (length,) = struct.unpack("!H", conn.recv(2))
                        data = conn.recv(length)
                        for reply in tcp(data):
                            conn.sendall(struct.pack("!H", len(reply)) + reply)

            threading.Thread(target=serve_tcp, daemon=True).start()
        return port

    yield start
    stop.set()
    for sock in sockets:
        sock.close()


def reply_to(data: bytes, *, flags: int = 0x8400, address: bytes = bytes([192, 0, 2, 1]), query_id: int | None = None) -> bytes:
    """An answer to the query in ``data``, echoing its question."""
    qid = struct.unpack("!H", data[:2])[0] if query_id is None else query_id
    return header(qid, flags=flags, an=1) + data[12:] + record(b"\xc0\x0c", A, 120, address)


def test_answers_with_a_wrong_id_or_question_are_ignored(dns_server) -> None:
    def udp(data: bytes) -> list[bytes]:
        qid = struct.unpack("!H", data[:2])[0]
        spoofed = reply_to(data, address=bytes([6, 6, 6, 6]), query_id=qid ^ 0xFFFF)
        other_question = header(qid, an=0) + question("other.example.test.", A)
        return [spoofed, other_question, b"\x00junk", reply_to(data)]

    port = dns_server(udp)
    answer = query("app.example.test.", "A", server_host="127.0.0.1", server_port=port)
    assert answer.values == ("192.0.2.1",)
    assert answer.ttl == 120


def test_truncated_udp_answer_is_asked_again_over_tcp(dns_server) -> None:
    port = dns_server(
        lambda data: [header(struct.unpack("!H", data[:2])[0], flags=0x8600) + data[12:]],  # TC set, no answers
        lambda data: [reply_to(data, address=bytes([198, 51, 100, 9]))],
    )
    assert query("big.example.test.", "A", server_host="127.0.0.1", server_port=port).values == ("198.51.100.9",)


def test_silent_server_times_out_as_transient(dns_server) -> None:
    port = dns_server(lambda data: [])
    with pytest.raises(TransientStepError, match=rf"127.0.0.1:{port} timed out"):
        query("app.example.test.", server_host="127.0.0.1", server_port=port, timeout_s=0.3)


def test_closed_port_is_transient() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientStepError):
        query("app.example.test.", server_host="127.0.0.1", server_port=port, timeout_s=0.5)


def test_unsupported_query_type_is_refused_before_asking() -> None:
    with pytest.raises(PermanentStepError, match="MX"):
        query("example.test.", "MX", server_host="127.0.0.1", server_port=9)
