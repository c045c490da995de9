"""A TCP forwarder on 127.0.0.1 that a test can cut and restore, to make a server 'go away'."""

from __future__ import annotations

import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._clients: set[socket.socket] = set()
        self._cut_after: bytes | None = None
        self.cuts_after = 0  # connections cut by `cut_after_sending`

    def cut_after_sending(self, marker: bytes) -> None:
        """Once: forward the client's bytes holding `marker` to the server, then cut that connection
        before the answer comes back (e.g. a COMMIT the server carries out but whose reply is lost)."""
        self._cut_after = marker

    def start(self) -> TcpProxy:
        self._listen()
        self._thread.start()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
            self._selector.register(listener, selectors.EVENT_READ, "accept")

    def cut(self) -> None:
        """Refuse new connections and reset the open ones, as a stopped server would."""
        with self._lock:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for sock in list(self._pairs):
                self._drop(sock)

    def restore(self) -> None:
        self._listen()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(5)

    def _drop(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for item in (sock, peer):
            if item is None:
                continue
            self._pairs.pop(item, None)
            self._clients.discard(item)
            try:
                self._selector.unregister(item)
            except (KeyError, ValueError):
                pass
            item.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.1):
                with self._lock:
                    if key.data == "accept":
                        if self._listener is None:
                            continue
                        try:
                            client, _ = self._listener.accept()
                            upstream = socket.create_connection(self.target, timeout=5)
                        except OSError:
                            continue
                        for sock in (client, upstream):
                            sock.setblocking(True)
                        self._pairs[client], self._pairs[upstream] = upstream, client
                        self._clients.add(client)
                        self._selector.register(client, selectors.EVENT_READ, "data")
                        self._selector.register(upstream, selectors.EVENT_READ, "data")
                    elif key.fileobj in self._pairs:
                        sock = key.fileobj
                        try:
                            data = sock.recv(65536)
                        except OSError:
                            data = b""
                        if data:
                            try:
                                self._pairs[sock].sendall(data)
                            except OSError:
                                self._drop(sock)
                                continue
                            if self._cut_after is not None and sock in self._clients and self._cut_after in data:
                                self._cut_after = None
                                self.cuts_after += 1
                                self._drop(sock)
                        else:
                            self._drop(sock)
