"""The collector's local journal: what it accepted, on disk within a second, until the database has it.

Plain Python with no Django import. The ingest thread appends each accepted read to
`entries` (a list append: the hot path pays nothing more) and `cut()`s them into a
numbered record every sync interval and at every drain. The journal thread compresses each
record, appends it to the current segment file with a CRC32, and fsyncs. The writer tells
the journal which records the database holds (`committed`), and whole segments below that
are deleted.

Exactly-once: every drained batch carries the number of the last record it contains
(`Batch.seq`); the database keeps, in the transaction that merges the batch, a mark per
journal and minute ("this minute holds every sample of records up to N", storage.JournalMark).
A replay applies a record's samples to a minute only above that mark, and a retried batch
whose mark is already stored (a COMMIT that succeeded but whose answer was lost) is skipped.

On disk (`<directory>/<journal id>/<first seq>.seg`), a record is
``magic "GHJ1" | seq u64 | length u32 | crc32 u32 | zlib(payload)``, the CRC over seq, length
and the compressed payload. A torn last record (a power cut in the middle of a write) fails
its CRC: it is cut off with one log line and the records before it are replayed.
Each process locks its journal directory (flock), so collectors sharing a port each keep
their own, and a directory left by a process that died is taken over by the next one.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import queue
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .ratelimit import LogLimiter

logger = logging.getLogger(__name__)

RAW = 0  # one read's firmware lines, as received (all accepted on the fast path)
SAMPLES = 1  # b"mac metric=value metric=value": the accepted values of one line (the slow path)

MAGIC = b"GHJ1"
HEADER = struct.Struct("<4sQII")  # magic, seq, payload length, crc32
ENTRY = struct.Struct("<BdHI")  # kind, timestamp, peer index, data length
PEER = struct.Struct("<H")
MAX_RECORD_BYTES = 256 * 1024 * 1024
SEGMENT_SUFFIX = ".seg"
LOCK_NAME = "lock"
SEQ_NAME = "seq"  # the newest seq ever written, kept when its segment is deleted: numbers never restart

Entry = tuple[float, str, bytes, int]  # (timestamp, peer, data, kind), as the ingest thread appends it


class JournalError(Exception):
    """The journal directory cannot be used (it is created or locked at start)."""


@dataclass(slots=True)
class Record:
    seq: int
    entries: list[Entry]


def encode(seq: int, entries: list[Entry]) -> tuple[bytes, float]:
    """One record as bytes on disk, and the earliest timestamp in it."""
    peers: dict[str, int] = {}
    parts: list[bytes] = []
    earliest = float("inf")
    for timestamp, peer, data, kind in entries:
        index = peers.get(peer)
        if index is None:
            index = peers[peer] = len(peers)
        if timestamp < earliest:
            earliest = timestamp
        parts.append(ENTRY.pack(kind, timestamp, index, len(data)))
        parts.append(data)
    table = [PEER.pack(len(peers))]
    for peer in peers:
        raw = peer.encode()
        table.append(PEER.pack(len(raw)) + raw)
    payload = zlib.compress(b"".join(table + parts), 1)
    head = struct.pack("<QI", seq, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return HEADER.pack(MAGIC, seq, len(payload), crc) + payload, earliest


def decode(payload: bytes) -> list[Entry]:
    """The entries of a record's compressed payload (raises ValueError/zlib.error/struct.error on junk)."""
    data = zlib.decompress(payload)
    (count,) = PEER.unpack_from(data, 0)
    offset = PEER.size
    peers = []
    for _ in range(count):
        (length,) = PEER.unpack_from(data, offset)
        offset += PEER.size
        peers.append(data[offset : offset + length].decode())
        offset += length
    entries: list[Entry] = []
    while offset < len(data):
        kind, timestamp, index, length = ENTRY.unpack_from(data, offset)
        offset += ENTRY.size
        entries.append((timestamp, peers[index], data[offset : offset + length], kind))
        offset += length
    if offset != len(data):
        raise ValueError("entry runs past the end of its record")
    return entries


def read_segment(path: Path, limit: int | None = None) -> tuple[list[tuple[int, int, int]], int]:
    """Scan a segment: [(seq, offset, size)] of its valid records, and the length they span.

    Stops at the first record that is torn or fails its checksum (everything after it is
    unreadable: a write error always moves on to a new segment). `limit`: read no further.
    """
    found: list[tuple[int, int, int]] = []
    with open(path, "rb") as file:
        data = file.read() if limit is None else file.read(limit)
    offset = 0
    while offset + HEADER.size <= len(data):
        magic, seq, length, crc = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if magic != MAGIC or length > MAX_RECORD_BYTES or end > len(data):
            break
        payload = data[offset + HEADER.size : end]
        if zlib.crc32(payload, zlib.crc32(struct.pack("<QI", seq, length))) != crc:
            break
        found.append((seq, offset, end - offset))
        offset = end
    return found, offset


@dataclass
class Segment:
    path: Path
    first_seq: int
    last_seq: int = 0
    size: int = 0  # bytes of valid, synced records
    earliest: float = float("inf")  # earliest sample timestamp in it (marks below it can go)
    opened: float = field(default_factory=time.monotonic)


class Journal:
    """One process's journal directory: appended by the ingest thread, written by its own thread.

    `entries` and `cut` belong to the ingest thread; `committed`, `synced_through`, `covers` and
    `records` are called from the writer thread; everything else runs in the journal thread.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 8 << 20,
        segment_seconds: float = 60.0,
        fsync: bool = True,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.directory = directory
        self.id = directory.name
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.fsync = fsync
        self.on_exit = on_exit
        self.entries: list[Entry] = []  # the ingest thread's record being filled
        self.last_seq = 0  # the newest record cut (ingest thread)
        self.bytes_written = 0
        self.records_written = 0
        self.dropped_records = 0  # over max_bytes, or lost to a write error
        self.dropped_entries = 0
        self.write_errors = 0
        self.torn_records = 0
        self._segments: list[Segment] = []
        self._file: int | None = None  # fd of the last segment, appended to
        self._lock_fd: int | None = None
        self._queue: queue.SimpleQueue[Record | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # segments list, synced/committed/failed state
        self._synced_through = 0
        self._committed_through = 0
        self._failed: list[int] = []  # seqs of records that never reached the disk
        self._log_limiter = LogLimiter(1, 60.0)
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()  # signalled as records are handled (sync waits on it)
        self._handled = 0  # the newest seq written or dropped (journal thread; read under _idle)

    # --- opening -------------------------------------------------------------------
    @classmethod
    def open(cls, base: Path, **options) -> tuple[Journal, list[Journal]]:
        """Lock a journal directory under `base` (a free one left by an earlier run, else a new one).

        Returns it and the other free journals, locked and loaded (left by processes that died:
        the caller replays, stops and removes them). Raises JournalError when `base` is unusable.
        """
        try:
            base.mkdir(parents=True, exist_ok=True)
            candidates = sorted(path for path in base.iterdir() if path.is_dir() and not path.name.startswith("."))
        except OSError as exc:
            raise JournalError(f"cannot use the journal directory {base}: {exc.strerror or exc}") from exc
        free: list[Journal] = []
        for path in candidates:
            fd = _try_lock(path)
            if fd is None:
                continue  # another collector's
            journal = cls(path, **options)
            journal._lock_fd = fd
            journal.load()
            free.append(journal)
        if not free:
            path = base / uuid.uuid4().hex
            try:
                path.mkdir()
            except OSError as exc:
                raise JournalError(f"cannot create a journal in {base}: {exc.strerror or exc}") from exc
            fd = _try_lock(path)
            if fd is None:
                raise JournalError(f"cannot lock the new journal {path}")
            journal = cls(path, **options)
            journal._lock_fd = fd
            free.append(journal)
        return free[0], free[1:]

    def load(self) -> None:
        """Index the segments on disk, cutting a torn tail; set `last_seq` after the newest record.

        Record numbers never start over in one journal: the database's marks name them, and a
        number used again would make a new record look stored already.
        """
        try:
            self.last_seq = int((self.directory / SEQ_NAME).read_text().strip() or 0)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            logger.error("journal %s: cannot read its %s file (%s)", self.id, SEQ_NAME, exc)
        for path in sorted(self.directory.glob("*" + SEGMENT_SUFFIX)):
            try:
                first = int(path.stem)
                found, length = read_segment(path)
                actual = path.stat().st_size
            except (OSError, ValueError) as exc:
                logger.error("journal %s: cannot read %s (%s); leaving it", self.id, path.name, exc)
                continue
            if length < actual:
                self.torn_records += 1
                logger.warning(
                    "journal %s: cut a torn or damaged record off %s at byte %d (%d bytes dropped)",
                    self.id,
                    path.name,
                    length,
                    actual - length,
                )
                try:
                    os.truncate(path, length)
                except OSError as exc:
                    logger.error("journal %s: cannot truncate %s (%s)", self.id, path.name, exc)
            if not found:
                _unlink(path)
                continue
            segment = Segment(path, first, found[-1][0], length)
            stamps = (entry[0] for record in self._records_of(segment) for entry in record.entries)
            segment.earliest = min(stamps, default=segment.earliest)
            self._segments.append(segment)
            self.last_seq = max(self.last_seq, segment.last_seq)
        self._synced_through = self._handled = self.last_seq

    # --- the ingest thread ---------------------------------------------------------
    def advance_past(self, seq: int) -> None:
        """Number new records after `seq` (the newest mark the database has for this journal)."""
        if seq > self.last_seq:
            logger.warning("journal %s: the database has marks up to record %d; numbering on from there", self.id, seq)
            self.last_seq = self._synced_through = self._handled = seq

    def cut(self) -> int:
        """Close the record being filled (if any) and queue it for the disk; return the newest seq."""
        if self.entries:
            self.last_seq += 1
            self._queue.put(Record(self.last_seq, self.entries))
            self.entries = []
        return self.last_seq

    # --- the writer thread -----------------------------------------------------------
    @property
    def synced_through(self) -> int:
        return self._synced_through

    @property
    def has_records(self) -> bool:
        """Are there records on disk (an earlier run's, until the database has them)?"""
        return bool(self._segments)

    @property
    def committed_through(self) -> int:
        return self._committed_through

    def covers(self, seq: int) -> bool:
        """Are all records up to `seq` not yet committed on disk (so memory may forget them)?"""
        with self._lock:
            return self._synced_through >= seq and not any(self._committed_through < f <= seq for f in self._failed)

    def committed(self, seq: int) -> None:
        """The database holds every sample of records up to `seq`: their segments can go."""
        with self._lock:
            if seq > self._committed_through:
                self._committed_through = seq
                self._failed = [f for f in self._failed if f > seq]

    def oldest_timestamp(self) -> float:
        """The earliest sample still in the journal (the marks below its minute are not needed)."""
        with self._lock:
            return min((segment.earliest for segment in self._segments), default=float("inf"))

    def records(self, after: int = 0) -> Iterator[Record]:
        """The valid records after seq `after`, in order, read from disk up to what is synced."""
        with self._lock:
            segments = [(s.path, s.size, s.last_seq) for s in self._segments if s.last_seq > after]
        for path, size, _last in segments:
            try:
                found, _length = read_segment(path, size)
                records = list(self._decode_found(path, found, after))
            except FileNotFoundError:
                continue  # committed and deleted meanwhile
            except OSError as exc:
                logger.error("journal %s: cannot read %s (%s)", self.id, path.name, exc)
                continue
            yield from records

    # --- the journal thread ------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="collector-journal", daemon=True)
        self._thread.start()

    def sync(self, timeout: float) -> bool:
        """Wait until every record cut so far is on disk (or was dropped); True if it got there."""
        target = self.last_seq
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._handled < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return self._handled >= target
                self._idle.wait(remaining)
        return True

    def stop(self, timeout: float = 5.0) -> bool:
        """Write what is queued, close the files and release the lock; True if the thread ended."""
        self._queue.put(None)
        ended = True
        if self._thread is not None:
            self._thread.join(timeout)
            ended = not self._thread.is_alive()
        if ended:
            self._delete_committed()  # after a clean stop the database has it all: nothing to replay
            self._close_file()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        return ended

    def write_records(self, records: list[Record]) -> None:
        """Append records to the current segment and fsync once (one step of the thread; tests call it)."""
        self._delete_committed()
        segment = self._segments[-1] if self._segments else None
        if segment is not None and (
            segment.size >= self.segment_bytes or time.monotonic() - segment.opened >= self.segment_seconds
        ):
            self._close_file()  # the next append starts a new segment
        written: list[tuple[Record, int, float]] = []
        pending_bytes = 0
        for record in records:
            blob, earliest = encode(record.seq, record.entries)
            if self._total_bytes() + pending_bytes + len(blob) > self.max_bytes:
                self._drop(record, "the journal is full (COLLECTOR_JOURNAL_MAX_BYTES)")
                continue
            try:
                self._append(record.seq, blob)
            except OSError as exc:
                self._write_failed(exc, [record] + [r for r, _, _ in written])
                written = []
                continue
            written.append((record, len(blob), earliest))
            pending_bytes += len(blob)
        if written and not self._sync_file(written):
            return
        with self._lock:
            segment = self._segments[-1] if self._segments else None
            for record, size, earliest in written:
                if segment is not None:
                    segment.size += size
                    segment.last_seq = record.seq
                    segment.earliest = min(segment.earliest, earliest)
                self.bytes_written += size
                self.records_written += 1
            if written:
                self._synced_through = max(self._synced_through, written[-1][0].seq)

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                try:
                    first = self._queue.get(timeout=1.0)
                except queue.Empty:
                    self._delete_committed()
                    continue
                batch = []
                item: Record | None = first
                while True:
                    if item is None:
                        stopping = True
                    else:
                        batch.append(item)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    try:
                        self.write_records(batch)
                    except Exception:
                        logger.exception("journal %s: cannot write %d records", self.id, len(batch))
                        for record in batch:
                            self._mark_failed(record)
                    with self._idle:
                        self._handled = batch[-1].seq
                        self._idle.notify_all()
        finally:
            if self.on_exit is not None:
                self.on_exit()

    # --- internals -------------------------------------------------------------------
    def _total_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    def _append(self, seq: int, blob: bytes) -> None:
        if self._file is None:
            self._open_segment(seq)
        assert self._file is not None
        view = memoryview(blob)
        while view:
            count = os.write(self._file, view)
            view = view[count:]

    def _open_segment(self, first_seq: int) -> None:
        self._close_file()
        path = self.directory / f"{first_seq:020d}{SEGMENT_SUFFIX}"
        self._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        with self._lock:
            self._segments.append(Segment(path, first_seq))
        if self.fsync:
            _fsync_directory(self.directory)  # the new file's name survives a power cut

    def _sync_file(self, written: list[tuple[Record, int, float]]) -> bool:
        if not self.fsync or self._file is None:
            return True
        try:
            os.fsync(self._file)
        except OSError as exc:
            self._write_failed(exc, [record for record, _, _ in written])
            return False
        return True

    def _write_failed(self, exc: OSError, records: list[Record]) -> None:
        """A write or fsync failed (a full disk, a removed directory): drop these records from the
        journal, close the segment (trimmed to its last good record) and try a new one next time."""
        self.write_errors += 1
        segment = self._segments[-1] if self._segments else None
        self._close_file()
        if segment is not None and segment.size == 0:  # nothing good in it: do not leave an empty file
            _unlink(segment.path)
            with self._lock:
                self._segments.remove(segment)
        elif segment is not None:
            try:
                os.truncate(segment.path, segment.size)
            except OSError:
                pass  # the reader stops at the first bad record anyway
        if self._log_limiter.allow("write"):
            reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            logger.error(
                "journal %s: cannot write (%s); %d records kept in memory only until the database has them",
                self.id,
                reason,
                len(records),
            )
        for record in records:
            self._mark_failed(record)

    def _drop(self, record: Record, why: str) -> None:
        self._mark_failed(record)
        if self._log_limiter.allow("full"):
            logger.error(
                "journal %s: %s (%d bytes): %d records not journaled so far",
                self.id,
                why,
                self._total_bytes(),
                self.dropped_records,
            )

    def _mark_failed(self, record: Record) -> None:
        self.dropped_records += 1
        self.dropped_entries += len(record.entries)
        with self._lock:
            self._failed.append(record.seq)

    def _delete_committed(self) -> None:
        """Delete the segments whose records are all in the database (the current one is closed first)."""
        with self._lock:
            committed = self._committed_through
            doomed = [s for s in self._segments if s.last_seq and s.last_seq <= committed]
        if not doomed:
            return
        try:
            self._save_seq(max(self.last_seq, max(segment.last_seq for segment in doomed)))
        except OSError as exc:
            # A full disk must not keep stored data on it: delete all but the newest segment,
            # whose name and records still carry the highest number.
            newest = max(doomed, key=lambda segment: segment.last_seq)
            doomed = [segment for segment in doomed if segment is not newest]
            if self._log_limiter.allow("seq"):
                logger.error("journal %s: cannot save its record number (%s); keeping its newest segment", self.id, exc)
            if not doomed:
                return
        if self._segments and doomed[-1] is self._segments[-1]:
            self._close_file()
        for segment in doomed:
            _unlink(segment.path)
        with self._lock:
            self._segments = [s for s in self._segments if s not in doomed]

    def _save_seq(self, seq: int) -> None:
        """Keep the newest record number on disk (atomically) before the segment holding it goes."""
        temporary = self.directory / (SEQ_NAME + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, f"{seq}\n".encode())
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.directory / SEQ_NAME)
        if self.fsync:
            _fsync_directory(self.directory)

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                os.close(self._file)
            except OSError:
                pass
            self._file = None

    def _records_of(self, segment: Segment) -> Iterator[Record]:
        found, _length = read_segment(segment.path, segment.size)
        return self._decode_found(segment.path, found, 0)

    def _decode_found(self, path: Path, found: list[tuple[int, int, int]], after: int) -> Iterator[Record]:
        with open(path, "rb") as file:
            for seq, offset, size in found:
                if seq <= after:
                    continue
                file.seek(offset + HEADER.size)
                payload = file.read(size - HEADER.size)
                try:
                    entries = decode(payload)
                except (ValueError, zlib.error, struct.error, UnicodeDecodeError, IndexError) as exc:
                    logger.error("journal %s: record %d in %s unreadable (%s); skipped", self.id, seq, path.name, exc)
                    continue
                yield Record(seq, entries)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path`/lock, or None if another process holds it."""
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def retire(journal: Journal) -> None:
    """Delete a replayed journal: renamed away while still locked (so no starting collector can take
    it in between), then unlocked and removed."""
    gone = journal.directory.with_name(f".removed-{journal.id}")
    try:
        journal.directory.rename(gone)
    except OSError as exc:
        logger.warning("cannot remove the replayed journal %s (%s)", journal.directory, exc)
        journal.stop()
        return
    journal.stop()
    for child in gone.iterdir():
        _unlink(child)
    try:
        gone.rmdir()
    except OSError as exc:
        logger.warning("cannot remove the replayed journal %s (%s)", gone, exc)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot delete journal file %s (%s)", path, exc)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
