"""Ports picked at ``up`` are free on every address that will bind them, and never repeated."""

from __future__ import annotations

import socket

from cutover.sandbox.ports import PortPicker, port_is_free


def test_picked_ports_are_distinct_and_bindable_on_every_address():
    picker = PortPicker()
    hosts = ("127.0.0.2", "127.0.0.3")
    ports = [picker.pick(hosts=hosts) for _ in range(20)]
    assert len(set(ports)) == 20
    for port in ports:
        for host in hosts:
            with socket.socket() as sock:
                sock.bind((host, port))


def test_a_port_bound_on_one_address_is_not_free_for_both():
    with socket.socket() as taken:
        taken.bind(("127.0.0.3", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert not port_is_free(port, ("127.0.0.2", "127.0.0.3"))


def test_a_udp_port_in_use_is_not_free_for_dns():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert not port_is_free(port, ("127.0.0.1",), udp=True)
