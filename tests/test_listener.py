"""LineListener driven step by step, as the collector does: keepalive, idle sweep, clean close."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from sensors.ingest.listener import BindError, LineListener, peer_allowed


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def received():
    return []


@pytest.fixture
def listener(received):
    clock = Clock()
    server = LineListener(
        "127.0.0.1",
        0,
        lambda peer, block, ts: received.extend(block.split(b"\n")[:-1]),
        idle_timeout=60,
        clock=clock,
        idle_clock=clock,
    )
    server.bind()
    yield server
    server.close_all()


def poll_until(listener: LineListener, condition, attempts: int = 50) -> None:
    for _ in range(attempts):
        if condition():
            return
        listener.poll(0.05)
    raise AssertionError("condition not reached")


def test_accepted_connections_have_tcp_keepalive_on(listener):
    with socket.create_connection((listener.host, listener.port)):
        poll_until(listener, lambda: listener.connection_count == 1)
        conn = next(iter(listener._connections.values()))
        assert conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


def test_only_connections_silent_past_the_timeout_are_closed(listener, received):
    with socket.create_connection((listener.host, listener.port)) as quiet:
        poll_until(listener, lambda: listener.connection_count == 1)
        listener.clock.now += 30
        with socket.create_connection((listener.host, listener.port)) as chatty:
            chatty.sendall(b"Soil: 1; from 5c:cf:7f:0a:1b:2c\n")
            poll_until(listener, lambda: received)
            listener.clock.now += 31  # quiet: silent 61 s; chatty: 31 s
            assert listener.close_idle() == 1
            assert listener.connection_count == 1
            quiet.settimeout(5)
            assert quiet.recv(10) == b""


def test_line_without_newline_at_close_is_counted_incomplete_and_not_delivered(listener, received):
    with socket.create_connection((listener.host, listener.port)) as sock:
        sock.sendall(b"Soil: 1; from 5c:cf:7f:0a:1b:2c\nSoil: 2; fr")
        poll_until(listener, lambda: received)
    poll_until(listener, lambda: listener.connection_count == 0)
    assert received == [b"Soil: 1; from 5c:cf:7f:0a:1b:2c"]
    assert listener.counters["incomplete_line"] == 1


def test_an_error_in_the_line_handler_closes_only_that_connection():
    def handle(peer, block, ts):
        if b"boom" in block:
            raise RuntimeError("bug")
        served.extend(block.split(b"\n")[:-1])

    served: list[bytes] = []
    server = LineListener("127.0.0.1", 0, handle)
    server.bind()
    try:
        with socket.create_connection((server.host, server.port)) as bad:
            with socket.create_connection((server.host, server.port)) as good:
                poll_until(server, lambda: server.connection_count == 2)
                bad.sendall(b"boom\n")
                poll_until(server, lambda: server.connection_count == 1)
                good.sendall(b"fine\n")
                poll_until(server, lambda: served)
        assert served == [b"fine"]
        assert server.counters["handler_errors"] == 1
    finally:
        server.close_all()


def test_binding_a_used_port_raises_a_readable_error(listener):
    with pytest.raises(BindError, match="already in use"):
        LineListener("127.0.0.1", listener.port, lambda *a: None).bind()


def test_unresolvable_host_raises_a_readable_error():
    with pytest.raises(BindError, match="cannot resolve listen address"):
        LineListener("no-such-host.invalid", 0, lambda *a: None).bind()


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("192.168.1.7", True),
        ("::ffff:192.168.1.7", True),
        ("192.168.2.7", False),
        ("fe80::1%eth0", False),
        ("2001:db8::5", True),
    ],
)
def test_peer_allowed_matches_ipv4_ipv6_and_mapped_addresses(host, allowed):
    networks = [ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("2001:db8::/32")]
    assert peer_allowed(host, networks) is allowed


def test_block_handler_gets_whole_lines_and_a_too_long_line_closes_after_the_lines_before_it():
    blocks: list[bytes] = []
    server = LineListener("127.0.0.1", 0, lambda peer, block, ts: blocks.append(block))
    server.bind()
    try:
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(b"one\ntw")
            poll_until(server, lambda: blocks)
            sock.sendall(b"o\n" + b"x" * 1025 + b"\nthree\n")
            poll_until(server, lambda: server.connection_count == 0)
        assert b"".join(blocks) == b"one\ntwo\n"
        assert server.counters["line_too_long"] == 1
    finally:
        server.close_all()


def test_one_address_cannot_take_every_slot():
    server = LineListener("127.0.0.1", 0, lambda *a: None, max_connections=4)  # 2 per address by default
    server.bind()
    try:
        first, second = (socket.create_connection((server.host, server.port)) for _ in range(2))
        poll_until(server, lambda: server.connection_count == 2)
        with socket.create_connection((server.host, server.port)) as third:
            poll_until(server, lambda: server.counters["refused_per_address"] == 1)
            third.settimeout(5)
            assert third.recv(1) == b""  # closed by the server
        with socket.create_connection((server.host, server.port), source_address=("127.0.0.2", 0)) as other:
            poll_until(server, lambda: server.connection_count == 3)  # another address still gets in
            first.close()
            poll_until(server, lambda: server.connection_count == 2)
            with socket.create_connection((server.host, server.port)):
                poll_until(server, lambda: server.connection_count == 3)  # a freed slot is usable again
            other.close()
        second.close()
    finally:
        server.close_all()


def line_under_way(listener: LineListener) -> bool:
    """Has the listener read the newest byte of the unfinished line (at the clock's current time)?"""
    return any(
        conn.line_started is not None and conn.last_active == listener.clock.now
        for conn in listener._connections.values()
    )


def test_a_line_trickled_byte_by_byte_is_closed_after_the_line_timeout(listener, received):
    listener.line_timeout = 30
    with socket.create_connection((listener.host, listener.port)) as slow:
        with socket.create_connection((listener.host, listener.port)) as board:
            board.sendall(b"Soil: 1; from 5c:cf:7f:0a:1b:2c\n")
            for byte in b"Soil: 2; fr":  # one byte every 3 s: each resets the idle timer, never the line's
                slow.sendall(bytes([byte]))
                poll_until(listener, lambda: line_under_way(listener))
                listener.clock.now += 3
            assert listener.close_idle() == 1
            assert listener.counters["slow_line_closed"] == 1
            assert listener.connection_count == 1  # the board that sent whole lines stays
    assert received == [b"Soil: 1; from 5c:cf:7f:0a:1b:2c"]
