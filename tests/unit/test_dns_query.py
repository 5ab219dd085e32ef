"""The stdlib DNS client: hand-built packets, and a tiny local server that answers with them."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from cutover.dns.query import (
    MalformedAnswer,
    answer_for,
    build_query,
    decode_name,
    encode_name,
    parse_message,
    query,
)
from cutover.errors import PermanentStepError, TransientStepError

A, CNAME, AAAA, IN = 1, 5, 28, 1


def header(query_id: int, *, flags: int = 0x8400, qd: int = 1, an: int = 0) -> bytes:
    return struct.pack("!HHHHHH", query_id, flags, qd, an, 0, 0)


def question(name: str, rtype: int) -> bytes:
    return encode_name(name) + struct.pack("!HH", rtype, IN)


def record(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, IN, ttl, len(rdata)) + rdata


def cname_then_a(query_id: int, flags: int = 0x8400) -> bytes:
    """www.example.test. CNAME app.example.test. ; app.example.test. A 192.0.2.7, compressed."""
    packet = header(query_id, flags=flags, an=2) + question("www.example.test.", A)
    # Offset 12 is the question name "www.example.test."; "example.test." starts at 16.
    target = b"\x03app\xc0\x10"  # "app" + pointer to "example.test."
    packet += record(b"\xc0\x0c", CNAME, 300, target)
    app_offset = len(packet) - len(target)
    packet += record(struct.pack("!H", 0xC000 | app_offset), A, 60, bytes([192, 0, 2, 7]))
    return packet


def test_query_packet_has_id_one_question_and_no_recursion() -> None:
    packet = build_query(0xBEEF, "burgerzaken.werkendam.test.", "AAAA")
    assert packet[:12] == struct.pack("!HHHHHH", 0xBEEF, 0, 1, 0, 0, 0)
    assert packet[12:] == b"\x0bburgerzaken\x09werkendam\x04test\x00" + struct.pack("!HH", AAAA, IN)


def test_compressed_names_are_decoded_and_cname_chain_followed() -> None:
    message = parse_message(cname_then_a(7))
    assert message.question == ("www.example.test.", A, IN)
    answer = answer_for(message, "www.example.test.", "A")
    assert answer.values == ("192.0.2.7",)
    assert answer.aliases == ("app.example.test.",)
    assert answer.ttl == 60  # the lowest TTL on the way
    assert answer.rcode == "NOERROR"
    cname = answer_for(message, "WWW.Example.Test", "CNAME")
    assert cname.values == ("app.example.test.",) and cname.ttl == 300


def test_aaaa_values_are_in_canonical_notation() -> None:
    packet = header(1, an=1) + question("v6.example.test.", AAAA)
    packet += record(b"\xc0\x0c", AAAA, 30, bytes(15) + b"\x01")
    assert answer_for(parse_message(packet), "v6.example.test.", "AAAA").values == ("::1",)


def test_nxdomain_is_an_answer_without_values() -> None:
    packet = header(1, flags=0x8403) + question("gone.example.test.", A)
    answer = answer_for(parse_message(packet), "gone.example.test.", "A")
    assert (answer.values, answer.ttl, answer.rcode) == ((), None, "NXDOMAIN")


@pytest.mark.parametrize(
    ("packet", "offset"),
    [
        (b"\xc0\x00", 0),  # pointer to itself
        (b"\x03abc\xc0\x00", 0),  # pointer back to the start: endless
        (b"\x05ab", 0),  # label longer than the message
        (b"\xc0\x20", 0),  # pointer past the end
        (b"\x40abc", 0),  # reserved label type
    ],
)
def test_malformed_names_are_rejected_not_looped(packet: bytes, offset: int) -> None:
    with pytest.raises(MalformedAnswer):
        decode_name(packet, offset)


def test_record_data_running_past_the_message_is_rejected() -> None:
    packet = header(1, an=1) + question("a.example.test.", A) + b"\xc0\x0c" + struct.pack("!HHIH", A, IN, 5, 4) + b"\x01\x02"
    with pytest.raises(MalformedAnswer):
        parse_message(packet)


def test_names_with_overlong_labels_cannot_be_asked() -> None:
    with pytest.raises(PermanentStepError):
        encode_name("x" * 64 + ".example.test.")


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
