"""Framing: one connection's byte stream -> complete lines, whatever the recv boundaries.

Plain Python with no Django import. Lines end at ``\\n``; a line longer than
`MAX_LINE_BYTES` is refused (docs/protocol.md), and memory per connection is
bounded by that plus one read.
"""

from __future__ import annotations

MAX_LINE_BYTES = 1024


def _may_have_long_line(data: bytes, end: int, limit: int) -> bool:
    """Could `data[:end]` hold a run of more than `limit` bytes without a newline?

    A run of at least limit + 1 bytes covers a whole aligned window of (limit + 2) // 2 bytes,
    so looking for ``\\n`` in each window (a few hundred `find` calls for 256 KiB) never misses
    one; a window without ``\\n`` only means the exact, per-line check must run.
    """
    width = (limit + 2) // 2
    find = data.find
    for start in range(0, end - width + 1, width):
        if find(b"\n", start, start + width) < 0:
            return True
    return False


class LineFramer:
    """Cuts one connection's byte stream into lines at ``\\n``.

    Keeps at most one partial line between reads, so memory per connection is
    bounded by `max_line_bytes` plus one read.
    """

    __slots__ = ("_partial", "max_line_bytes")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._partial = b""
        self.max_line_bytes = max_line_bytes

    def feed_block(self, data: bytes) -> tuple[bytes, bool]:
        """Return the complete lines in `data` as one block, each ending in ``\\n``, and whether a line was too long.

        One block rather than a list of lines: the collector scans it whole (its fast path).
        On a too-long line the lines before it are still returned; the caller is expected to
        close the connection, so nothing after it is kept.
        """
        limit = self.max_line_bytes
        if self._partial:
            data = self._partial + data
        elif data[-1:] == b"\n" and len(data) <= limit + 1:  # whole short lines: the usual read
            return data, False
        cut = data.rfind(b"\n") + 1
        if cut and cut > limit and _may_have_long_line(data, cut, limit):
            lines, too_long = self._feed_lines(data[:cut] + b"x")  # the "x" stands for the partial line
            if too_long:
                self._partial = b""
                return b"".join(line + b"\n" for line in lines), True
        block, partial = data[:cut], data[cut:]
        if len(partial) > limit:
            self._partial = b""
            return block, True
        self._partial = partial
        return block, False

    def _feed_lines(self, data: bytes) -> tuple[list[bytes], bool]:
        """The complete lines of `data` up to the first too-long one, and whether there was one."""
        lines = data.split(b"\n")
        lines.pop()
        limit = self.max_line_bytes
        for index, line in enumerate(lines):
            if len(line) > limit:
                return lines[:index], True
        return lines, False

    @property
    def has_partial(self) -> bool:
        """Is a line under way (bytes received after the last newline)?"""
        return bool(self._partial)

    def finish(self) -> bool:
        """Forget the partial line at end of stream; True if one was discarded."""
        incomplete = bool(self._partial.strip())
        self._partial = b""
        return incomplete
