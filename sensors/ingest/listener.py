"""One thread, many sensor connections: a `selectors` based TCP line listener.

No Django import. The listener owns sockets and framing only: it accepts,
reads, frames lines and hands them to a callback with the peer and the time
they were read. Parsing and aggregation belong to the caller (as in
`socketserver`, lifecycle, framing and handling are kept apart).

Each call to `poll` is one step, so the owner decides when to flush, report or
stop, and tests can drive it directly.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence

from .framing import MAX_LINE_BYTES, LineFramer
from .protocol import Reason
from .ratelimit import LogLimiter

logger = logging.getLogger(__name__)

RECV_BYTES = 262144  # one read takes whatever has arrived, up to this (a fast sender's backlog)
# Connections the kernel completes before we accept them; Linux caps it at net.core.somaxconn
# (4096 by default since 5.4), so asking for more lets a raised sysctl take effect. A full
# queue drops SYNs and the board retries after 1 s, then 3 s (the old server's 3 s delays).
LISTEN_BACKLOG = 65535
# Accepts per wakeup: 10,000 boards reconnecting at once are taken in ~20 wakeups while the
# connections already open keep being read in between.
ACCEPTS_PER_POLL = 512
ACCEPT_PAUSE = 1.0

BlockHandler = Callable[[str, bytes, float], None]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_allowed(host: str, networks: Sequence[Network]) -> bool:
    """Is the peer address in one of `networks`? (IPv4 seen through an IPv6 socket counts as IPv4.)"""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class BindError(Exception):
    """The listening address cannot be used; the message says why in plain words."""


class Connection:
    __slots__ = ("framer", "last_active", "line_started", "peer", "sock")

    def __init__(self, sock: socket.socket, peer: str, now: float, max_line_bytes: int) -> None:
        self.sock = sock
        self.peer = peer
        self.framer = LineFramer(max_line_bytes)
        self.last_active = now
        self.line_started: float | None = None  # when the line now being received began (None: between lines)


def _enable_keepalive(sock: socket.socket) -> None:
    """Let the kernel find half-open connections of boards that lost power (~2 min)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class LineListener:
    def __init__(
        self,
        host: str,
        port: int,
        handle_block: BlockHandler,
        *,
        max_connections: int = 12000,
        max_connections_per_address: int | None = None,
        idle_timeout: float = 600.0,
        line_timeout: float = 30.0,
        max_line_bytes: int = MAX_LINE_BYTES,
        clock: Callable[[], float] = time.time,
        idle_clock: Callable[[], float] = time.monotonic,
        allowed_networks: Sequence[Network] | None = None,
        reuse_port: bool = False,
    ) -> None:
        """`handle_block(peer, block, time)` gets each read's complete lines as one bytes block,
        every line ending in ``\\n``, with the time the read was made."""
        self.host = host
        self.port = port
        self.handle_block = handle_block
        self.reuse_port = reuse_port  # share the port with other collectors (SO_REUSEPORT)
        self._buffer = bytearray(RECV_BYTES)  # one thread reads every socket: one buffer serves all
        self._view = memoryview(self._buffer)
        self.max_connections = max_connections
        # One address may never take every slot, whatever the global limit (default: half of it).
        self.max_connections_per_address = max_connections_per_address or max(1, max_connections // 2)
        self.idle_timeout = idle_timeout
        # A line must arrive whole within this: one byte every few seconds must not hold a slot.
        self.line_timeout = line_timeout
        self._per_address: Counter[str] = Counter()
        self.max_line_bytes = max_line_bytes
        self.clock = clock  # wall clock: stamps samples
        self.idle_clock = idle_clock  # monotonic: an NTP step must not close every connection as idle
        self._accept_paused_until: float | None = None
        self.allowed_networks = list(allowed_networks) if allowed_networks else None  # None: any
        self.counters: Counter[str] = Counter()
        self._log_limiter = LogLimiter()
        self._selector = selectors.DefaultSelector()
        self._server: socket.socket | None = None
        self._connections: dict[int, Connection] = {}
        # Did the last poll find more waiting than one wakeup takes (a full read, a full accept
        # batch)? If not, the caller may wait a little before the next poll (see Collector.step).
        self.saturated = False

    # --- lifecycle -----------------------------------------------------------
    def bind(self) -> tuple[str, int]:
        """Open the listening socket; return the bound address (port 0 picks one)."""
        try:
            infos = socket.getaddrinfo(self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise BindError(f"cannot resolve listen address {self.host!r}: {exc.strerror}") from exc
        family, _, _, _, address = infos[0]
        server = socket.socket(family, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            try:
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            except (AttributeError, OSError) as exc:
                server.close()
                raise BindError(
                    f"cannot share port {self.port} between collectors (--reuse-port): this system has no "
                    "SO_REUSEPORT that spreads connections (Linux 3.9 or later)"
                ) from exc
        try:
            server.bind(address)
            server.listen(LISTEN_BACKLOG)
        except OSError as exc:
            server.close()
            if exc.errno == errno.EADDRINUSE:
                reason = "that port is already in use (is another collector running?"
                reason += " Collectors meant to share it must all be started with --reuse-port.)"
            elif exc.errno == errno.EACCES:
                reason = "permission denied (ports below 1024 need root)"
            elif exc.errno == errno.EADDRNOTAVAIL:
                reason = "that address is not one of this machine's"
            else:
                reason = exc.strerror or str(exc)
            raise BindError(f"cannot listen on {self.host}:{self.port}: {reason}") from exc
        server.setblocking(False)
        self._server = server
        self._selector.register(server, selectors.EVENT_READ, None)
        bound = server.getsockname()
        self.host, self.port = bound[0], bound[1]
        return self.host, self.port

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def stop_accepting(self) -> None:
        """Take the connections already waiting in the backlog, then close the listening socket."""
        if self._server is None:
            return
        self._accept(limit=None)
        self._close_server()

    def drain(self, max_seconds: float = 1.0) -> None:
        """Read what has already arrived on open connections, until quiet or out of time."""
        deadline = time.monotonic() + max_seconds
        while self._connections and time.monotonic() < deadline:
            if not self.poll(0):
                break

    def close_all(self) -> None:
        for conn in list(self._connections.values()):
            self._close(conn)
        self._close_server()
        self._selector.close()

    def _close_server(self) -> None:
        if self._server is None:
            return
        if self._accept_paused_until is None:
            self._selector.unregister(self._server)
        self._accept_paused_until = None
        self._server.close()
        self._server = None

    # --- one step --------------------------------------------------------------
    def poll(self, timeout: float | None) -> int:
        """Wait up to `timeout` for readiness and serve it; return how many sockets were ready."""
        if self._accept_paused_until is not None and time.monotonic() >= self._accept_paused_until:
            self._accept_paused_until = None
            if self._server is not None:
                self._selector.register(self._server, selectors.EVENT_READ, None)
        self.saturated = False
        events = self._selector.select(timeout)
        if not events:
            return 0
        # Read once per wakeup: the data of every ready socket had arrived by now.
        now, idle_now = self.clock(), self.idle_clock()
        read = self._read
        for key, _ in events:
            if key.data is None:
                self._accept(limit=ACCEPTS_PER_POLL)
            else:
                read(key.data, now, idle_now)
        return len(events)

    def close_idle(self, now: float | None = None) -> int:
        """Close connections that sent nothing for `idle_timeout` seconds, or have been sending one
        line for longer than `line_timeout` (a slow-loris peer trickling bytes to keep its slot)."""
        now = self.idle_clock() if now is None else now
        cutoff, line_cutoff = now - self.idle_timeout, now - self.line_timeout
        closed = 0
        for conn in list(self._connections.values()):
            if conn.last_active < cutoff:
                logger.debug("closing idle connection from %s", conn.peer)
                self.counters["idle_closed"] += 1
            elif conn.line_started is not None and conn.line_started < line_cutoff:
                self.counters["slow_line_closed"] += 1
                if self._log_limiter.allow("slow_line_closed"):
                    logger.warning(
                        "closing connection from %s: a line unfinished after %g s", conn.peer, self.line_timeout
                    )
            else:
                continue
            self._close(conn)
            closed += 1
        return closed

    # --- internals -------------------------------------------------------------
    def _accept(self, limit: int | None) -> None:
        assert self._server is not None
        accepted = 0
        while limit is None or accepted < limit:
            try:
                sock, address = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving the open connections
                self.counters["accept_errors"] += 1
                if self._log_limiter.allow("accept_errors"):
                    logger.error("cannot accept a connection (%s); pausing accepts for %.0f s", exc, ACCEPT_PAUSE)
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The backlog stays readable: without a pause select() would spin at 100 % CPU.
                    # (stop_accepting may call this while accepts are paused: unregister only once.)
                    if self._accept_paused_until is None:
                        self._selector.unregister(self._server)
                    self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                return
            accepted += 1
            if accepted == limit:
                self.saturated = True
            if self.allowed_networks is not None and not peer_allowed(address[0], self.allowed_networks):
                self.counters["refused_network"] += 1
                if self._log_limiter.allow("refused_network"):
                    logger.warning("refusing connection from %s: not in COLLECTOR_ALLOWED_NETWORKS", address[0])
                sock.close()
                continue
            if len(self._connections) >= self.max_connections:
                self.counters["refused_max_connections"] += 1
                if self._log_limiter.allow("refused_max_connections"):
                    logger.warning("refusing connection from %s: %d connections open", address[0], self.max_connections)
                sock.close()
                continue
            if self._per_address[address[0]] >= self.max_connections_per_address:
                self.counters["refused_per_address"] += 1
                if self._log_limiter.allow("refused_per_address"):
                    logger.warning(
                        "refusing connection from %s: it has %d open (COLLECTOR_MAX_CONNECTIONS_PER_ADDRESS)",
                        address[0],
                        self.max_connections_per_address,
                    )
                sock.close()
                continue
            sock.setblocking(False)
            try:
                _enable_keepalive(sock)
            except OSError:  # the peer may already be gone
                pass
            conn = Connection(sock, address[0], self.idle_clock(), self.max_line_bytes)
            self._connections[sock.fileno()] = conn
            self._per_address[conn.peer] += 1
            self._selector.register(sock, selectors.EVENT_READ, conn)
            self.counters["connections_opened"] += 1

    def _read(self, conn: Connection, now: float, idle_now: float) -> None:
        try:
            size = conn.sock.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by peer, timed out by keepalive
            size = 0
        if not size:
            self._close(conn)
            return
        if size == RECV_BYTES:
            self.saturated = True
        conn.last_active = idle_now
        data = self._view[:size].tobytes()
        try:
            block, too_long = conn.framer.feed_block(data)
            if not conn.framer.has_partial:
                conn.line_started = None
            elif block or conn.line_started is None:  # a new line began in this read
                conn.line_started = idle_now
            if block:
                self.handle_block(conn.peer, block, now)
        except Exception:  # a bug in handling must not stop the other boards being served
            self.counters["handler_errors"] += 1
            logger.exception("error handling lines from %s; closing that connection", conn.peer)
            self._close(conn)
            return
        if too_long:
            self.counters[Reason.LINE_TOO_LONG] += 1
            if self._log_limiter.allow(Reason.LINE_TOO_LONG):
                logger.warning("closing connection from %s: line longer than %d bytes", conn.peer, self.max_line_bytes)
            self._close(conn)

    def _close(self, conn: Connection) -> None:
        if conn.framer.finish():
            self.counters[Reason.INCOMPLETE_LINE] += 1
        if self._connections.pop(conn.sock.fileno(), None) is not None:
            self._per_address[conn.peer] -= 1
            if not self._per_address[conn.peer]:
                del self._per_address[conn.peer]
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        self.counters["connections_closed"] += 1
