"""The floor for the burst figure: a bare reader that only counts newlines (no parsing, nothing stored).

Same shape as the collector's listener (one thread, selectors/epoll, non-blocking sockets, large
recv), so the ratio collector / bare reader says what framing + parsing + aggregating + storing cost.
Prints "listening on HOST:PORT", and on SIGTERM the total number of lines it counted.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys

RECV_BYTES = 262144


def main() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(4096)
    server.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, None)
    lines = 0
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    print(f"listening on 127.0.0.1:{server.getsockname()[1]}", flush=True)
    while not stop:
        for key, _ in selector.select(0.25):
            if key.data is None:
                while True:
                    try:
                        sock, _ = server.accept()
                    except BlockingIOError:
                        break
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ, sock)
                continue
            sock = key.data
            try:
                data = sock.recv(RECV_BYTES)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()
                continue
            lines += data.count(b"\n")
    print(f"lines {lines}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
