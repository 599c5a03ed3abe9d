"""The fan-out's exchange: the G tasks of one build on one machine share the reading of a random-access source.

Task g generates only source batches b with b % G == g and cuts each (the caller's ``cut``: one piece per data
file, file k belonging to task k % G). It keeps the cuts of its own files and streams every other task's cuts to
it as Arrow IPC over a Unix socket, one stream per ordered pair of tasks. Each task takes the cuts of its files
for batch 0, 1, 2, ... in order, each from itself or from the task that generated that batch. So the source is
generated once in all, not once per task, and the rows cross between tasks through socket buffers: unlike the
map/reduce pieces (``shuffle.py``), nothing is written to disk twice, which matters most where fresh page-cache
memory is slow to touch. Only tasks on one machine, all running at once, can exchange; see ``fan_out``.

Per task: one generating thread (its batches, at most ``AHEAD`` of them cut and waiting), the calling thread
(receiving, in order) and the socket buffers. No deadlock: every task consumes batches in ascending order, so
the smallest batch anyone waits for has always been generated or is being sent. A task that fails records
its error in the exchange directory before it closes its sockets; a task whose peer's stream ends early or
whose peer stops reading fails with that peer's recorded error, so either report names the cause. A
connection must present the build's random token first, so nothing else on the machine can feed a build.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import pyarrow as pa

from feature_platform.datasets.source import RandomAccessSource, checked_batch

AHEAD = 2  # cut batches a task keeps for itself before its generating thread waits
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux; leave room for the terminator
HEADER = struct.Struct(">I32s")  # the sending task's index and the build's token


class ExchangeError(RuntimeError):
    """The exchange between a build's tasks broke (a task failed, never started or sent something else)."""


@dataclass(frozen=True)
class Exchange:
    """Where the tasks of one build meet: a private directory with one socket per task; picklable."""

    directory: str
    groups: int
    token: str
    open_seconds: float = 120.0  # how long a task waits for the others to start

    def socket_path(self, group: int) -> str:
        return os.path.join(self.directory, f"{group}.sock")

    def error_path(self, group: int) -> Path:
        return Path(self.directory) / f"{group}.error"

    def record_error(self, group: int, exc: BaseException) -> None:
        """Leave task ``group``'s error for its peers (first one wins), before its sockets close."""
        path = self.error_path(group)
        if path.exists():
            return
        partial = path.with_suffix(".partial")
        with contextlib.suppress(OSError):
            partial.write_text(f"{type(exc).__name__}: {exc}"[:2000], encoding="utf-8")
            os.replace(partial, path)

    def peer_error(self, group: int) -> str:
        try:
            return f"task {group} failed: " + self.error_path(group).read_text(encoding="utf-8")
        except OSError:
            return f"task {group} stopped without recording an error (killed?)"


@contextlib.contextmanager
def exchange_space(groups: int) -> Iterator[Exchange | None]:
    """A fresh exchange for ``groups`` tasks (removed afterwards), or None where socket paths would be too long."""
    directory = tempfile.mkdtemp(prefix="fp-x-")
    try:
        exchange = Exchange(directory=directory, groups=groups, token=secrets.token_hex(16))
        yield exchange if len(exchange.socket_path(groups - 1)) <= SOCKET_PATH_MAX else None
    finally:
        shutil.rmtree(directory, ignore_errors=True)


Cut = Callable[[pa.RecordBatch], list[pa.RecordBatch]]


class ExchangeEndpoint:
    """Task ``group``'s end of ``exchange``: ``cuts()`` yields, for every batch of ``source`` in order, the cuts of
    this task's files. Use it as a context manager; leaving it on an error records the error for the peers."""

    def __init__(self, exchange: Exchange, group: int, source: RandomAccessSource, schema: pa.Schema,
                 files: int, cut: Cut) -> None:
        if not 0 <= group < exchange.groups or not 2 <= exchange.groups <= files:
            raise ValueError(f"task {group} of {exchange.groups} is not a task of an exchange over {files} files")
        self._exchange, self._group, self._source, self._schema, self._cut = exchange, group, source, schema, cut
        self._own_files = len(range(group, files, exchange.groups))
        self._peers = [h for h in range(exchange.groups) if h != group]
        self._own: queue.Queue[list[pa.RecordBatch] | BaseException | None] = queue.Queue(maxsize=AHEAD)
        self._stop = threading.Event()
        self._incoming: list[socket.socket] = []
        self._readers: list[BinaryIO] = []  # the sockets' file objects: a socket closes only with them
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(exchange.socket_path(group))
            self._listener.listen(len(self._peers))
        except BaseException:
            self._listener.close()
            raise
        self._producer = threading.Thread(target=self._produce, name=f"exchange-{group}", daemon=True)

    def __enter__(self) -> ExchangeEndpoint:
        self._producer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None:
            self._exchange.record_error(self._group, exc)
        self._stop.set()
        for reader in self._readers:
            reader.close()
        for sock in [self._listener, *self._incoming]:  # a peer still sending to this task gets EPIPE
            sock.close()
        self._producer.join()

    # --- the generating thread: this task's batches, cut, kept or sent on ---
    def _produce(self) -> None:
        outgoing: list[socket.socket] = []
        try:
            streams: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
            for h in self._peers:
                sock = self._connect(h)
                outgoing.append(sock)
                streams[h] = pa.ipc.new_stream(_SocketSink(sock), self._schema)
            groups = self._exchange.groups
            for index in range(self._group, self._source.batch_count, groups):
                if self._stop.is_set():
                    return
                cuts = self._cut(checked_batch(self._source.batch(index), self._schema, index))
                for h, stream in streams.items():
                    for piece in cuts[h::groups]:
                        self._send(h, stream, piece)
                self._keep(cuts[self._group::groups])
            for h, stream in streams.items():
                self._send(h, stream, None)
            self._keep(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            self._exchange.record_error(self._group, exc)
            self._keep(exc)
        finally:
            for sock in outgoing:
                sock.close()

    def _connect(self, peer: int) -> socket.socket:
        deadline = time.monotonic() + self._exchange.open_seconds
        path = self._exchange.socket_path(peer)
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                sock.sendall(HEADER.pack(self._group, self._exchange.token.encode("ascii")))
                return sock
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                if self._stop.is_set() or time.monotonic() > deadline:
                    raise ExchangeError(f"exchange: task {peer} did not start within "
                                        f"{self._exchange.open_seconds:g} s") from exc
                time.sleep(0.01)
            except BaseException:
                sock.close()
                raise

    def _send(self, peer: int, stream: pa.ipc.RecordBatchStreamWriter, piece: pa.RecordBatch | None) -> None:
        try:
            stream.write_batch(piece) if piece is not None else stream.close()
        except (OSError, pa.ArrowException) as exc:
            raise ExchangeError(f"exchange: task {peer} stopped receiving: {self._exchange.peer_error(peer)}") \
                from exc

    def _keep(self, item: list[pa.RecordBatch] | BaseException | None) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._own.put(item, timeout=0.05)
                return

    # --- the calling thread: every batch's cuts of this task's files, in order ---
    def cuts(self) -> Iterator[list[pa.RecordBatch]]:
        streams = self._accept()
        groups, own = self._exchange.groups, self._own_files
        for index in range(self._source.batch_count):
            sender = index % groups
            if sender == self._group:
                item = self._own.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    raise ExchangeError(f"exchange: task {self._group} ended before batch {index}")
                yield item
            else:
                yield [self._receive(sender, streams[sender], index) for _ in range(own)]
        for sender, stream in streams.items():
            try:
                extra = stream.read_next_batch()
            except StopIteration:
                continue
            except (OSError, pa.ArrowException) as exc:
                raise self._broken(sender, "its stream's end", exc) from exc
            raise ExchangeError(f"exchange: task {sender} sent {extra.num_rows} rows past the source's last batch")
        if self._own.get() is not None:
            raise ExchangeError(f"exchange: task {self._group} generated past the source's last batch")

    def _accept(self) -> dict[int, pa.ipc.RecordBatchStreamReader]:
        self._listener.settimeout(self._exchange.open_seconds)
        streams: dict[int, pa.ipc.RecordBatchStreamReader] = {}
        while len(streams) < len(self._peers):
            try:
                sock, _ = self._listener.accept()
            except TimeoutError as exc:
                missing = sorted(set(self._peers) - set(streams))
                raise ExchangeError(f"exchange: task(s) {missing} did not start within "
                                    f"{self._exchange.open_seconds:g} s") from exc
            self._incoming.append(sock)
            sock.settimeout(self._exchange.open_seconds)
            reader = sock.makefile("rb")
            self._readers.append(reader)
            try:
                header = reader.read(HEADER.size)
            except OSError:  # a connection that says nothing within the time a task has to start
                header = b""
            sender, token = HEADER.unpack(header) if len(header) == HEADER.size else (-1, b"")
            if not secrets.compare_digest(token, self._exchange.token.encode("ascii")):
                raise ExchangeError(f"exchange: task {self._group} refused a connection without the build's token")
            if sender not in self._peers or sender in streams:
                raise ExchangeError(f"exchange: task {self._group} refused a second or unknown sender {sender}")
            try:
                stream = pa.ipc.open_stream(reader)
            except (OSError, pa.ArrowException) as exc:
                raise self._broken(sender, "its schema", exc) from exc
            if not stream.schema.equals(self._schema):
                raise ExchangeError(f"exchange: task {sender} sent another schema: expected {self._schema.names}, "
                                    f"got {stream.schema.names}")
            sock.settimeout(None)  # from here a peer may take as long as its batches take
            streams[sender] = stream
        return streams

    def _receive(self, sender: int, stream: pa.ipc.RecordBatchStreamReader, index: int) -> pa.RecordBatch:
        try:
            batch = stream.read_next_batch()
        except StopIteration:
            raise ExchangeError(f"exchange: task {sender}'s stream ended before batch {index}: "
                                f"{self._exchange.peer_error(sender)}") from None
        except (OSError, pa.ArrowException) as exc:
            raise self._broken(sender, f"batch {index}", exc) from exc
        return batch

    def _broken(self, sender: int, what: str, exc: BaseException) -> ExchangeError:
        return ExchangeError(f"exchange: task {sender}'s stream broke at {what} ({exc}): "
                             f"{self._exchange.peer_error(sender)}")


class _SocketSink:
    """The write end of a connection as the file object pyarrow's IPC writer wants."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        self._sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True
