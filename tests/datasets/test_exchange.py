"""The fan-out's exchange: tasks on local processes generate only their share of the source's batches and pass each
other the cuts, so every batch is generated once in all and the files keep the reference bytes; a task that
fails, dies, never starts, or a connection that is not the build's, stops the build with one line naming it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from feature_platform.datasets import exchange as exchange_module
from feature_platform.datasets.build import BuildResult, build_dataset, fan_out_groups
from feature_platform.datasets.exchange import HEADER, Exchange, ExchangeEndpoint, ExchangeError, exchange_space
from feature_platform.datasets.executors import TaskError, concurrent_tasks, task_session
from feature_platform.datasets.sharding import split_batch
from feature_platform.datasets.synthetic import SyntheticMarketSource
from tests.datasets.test_fanout_build import _from_one_file, _shas
from tests.datasets.test_mapreduce_build import _Counting, _Sequential

EPOCH = "1767225600"
ENTITY = "entity_id"


class _Logged(SyntheticMarketSource):
    """Appends ``pid index`` to ``log`` for every batch it generates, in whatever process that happens."""

    def __init__(self, *args: Any, log: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log = log

    def batch(self, index: int) -> pa.RecordBatch:
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {index}\n")
        return super().batch(index)


class _Killed(SyntheticMarketSource):
    """Its process dies (SIGKILL, no error recorded) when it comes to batch ``kill_at``."""

    def __init__(self, *args: Any, kill_at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kill_at = kill_at

    def batch(self, index: int) -> pa.RecordBatch:
        if index == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().batch(index)


def _source(rows: int = 1_200, batch_rows: int = 150, entities: int = 60) -> SyntheticMarketSource:
    return SyntheticMarketSource(rows, 5, batch_rows=batch_rows, entities=entities)


def _build(source: Any, out: Path, *, files: int, **kwargs: Any) -> BuildResult:
    return build_dataset(source, out, "ex_ds", dataset_version="v1", files=files, **kwargs)


def _exchanges() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("fp-x-*"))


@pytest.fixture
def no_exchange_left() -> Iterator[None]:
    """The test leaves no exchange directory behind in the temporary directory (where they are made)."""
    before = _exchanges()
    yield
    assert _exchanges() == before


@pytest.mark.parametrize(("files", "workers", "entities"), [(2, 2, 60), (3, 2, 60), (5, 3, 60), (8, 3, 5)])
def test_each_batch_is_generated_once_and_the_files_keep_their_bytes(
        files: int, workers: int, entities: int, tmp_path: Path, no_exchange_left: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    log = tmp_path / "generated.log"
    source = _Logged(1_200, 5, batch_rows=150, entities=entities, log=str(log))
    built = _build(source, tmp_path / "out", files=files, executor="process", workers=workers)
    lines = [line.split() for line in log.read_text(encoding="utf-8").splitlines()]
    assert sorted(int(index) for _, index in lines) == list(range(source.batch_count))  # once each, in all
    assert len({pid for pid, _ in lines}) == fan_out_groups(files, workers) > 1  # spread over the tasks
    for pid, index in lines:  # task g generated batches g, g + G, ...: one process per residue
        assert {p for p, i in lines if int(i) % workers == int(index) % workers} == {pid}
    log.unlink()
    assert _shas(built) == _from_one_file(_source(entities=entities), files, tmp_path / "reference")
    assert built.report.ok


def _run_endpoints(exchange: Exchange, sources: list[SyntheticMarketSource], files: int,
                   fail_after: dict[int, int] | None = None) -> list[list[list[pa.RecordBatch]] | BaseException]:
    """Every task's endpoint in a thread of this process: its cuts of every batch, or what it raised (task g's
    own writing fails after ``fail_after[g]`` batches)."""
    results: list[Any] = [None] * len(sources)
    keep: list[ExchangeEndpoint] = []  # alive until every task ends: closing, not collection, must free peers

    def run(group: int) -> None:
        try:
            endpoint = ExchangeEndpoint(exchange, group, sources[group], sources[group].schema, files,
                                        lambda batch: split_batch(batch, ENTITY, files))
            keep.append(endpoint)
            with endpoint:
                got = []
                for cuts in endpoint.cuts():
                    if len(got) == (fail_after or {}).get(group):
                        raise OSError(28, "No space left on device")
                    got.append(cuts)
                results[group] = got
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            results[group] = exc

    threads = [threading.Thread(target=run, args=(g,)) for g in range(len(sources))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_each_task_gets_every_batch_cut_of_its_files_in_order(no_exchange_left: None) -> None:
    source, files, groups = _source(), 5, 3
    with exchange_space(groups) as exchange:
        assert exchange is not None
        results = _run_endpoints(exchange, [source] * groups, files)
    for group, got in enumerate(results):
        assert not isinstance(got, BaseException)
        assert len(got) == source.batch_count
        for index, cuts in enumerate(got):
            expected = split_batch(source.batch(index), ENTITY, files)[group::groups]
            assert [c.to_pydict() for c in cuts] == [c.to_pydict() for c in expected]
    assert not Path(exchange.directory).exists()


def test_a_failed_task_names_its_error_in_every_task(no_exchange_left: None) -> None:
    good = _source()
    failing = _Counting(1_200, 5, batch_rows=150, entities=60, fail_at=3)  # batch 3 is task 1's of 2
    with exchange_space(2) as exchange:
        assert exchange is not None
        results = _run_endpoints(exchange, [good, failing], 2)
    own, peer = results[1], results[0]
    assert isinstance(own, RuntimeError) and str(own) == "source went away at batch 3"
    assert isinstance(peer, ExchangeError)
    assert "task 1" in str(peer) and "task 1 failed: RuntimeError: source went away at batch 3" in str(peer)


@pytest.mark.parametrize("failing", [0, 1])
def test_a_task_whose_writing_fails_releases_a_peer_blocked_sending_to_it(failing: int,
                                                                          no_exchange_left: None) -> None:
    big = SyntheticMarketSource(40_000, 5, batch_rows=2_000, entities=60)  # streams far past the socket buffers
    with exchange_space(2) as exchange:
        assert exchange is not None
        results = _run_endpoints(exchange, [big, big], 2, fail_after={failing: 1})
    own, peer = results[failing], results[1 - failing]
    assert isinstance(own, OSError) and "No space left on device" in str(own)
    assert isinstance(peer, ExchangeError)
    assert f"task {failing} failed: OSError: [Errno 28] No space left on device" in str(peer)


def test_a_task_that_never_starts_stops_the_others(no_exchange_left: None) -> None:
    with exchange_space(3) as exchange:
        assert exchange is not None
        short = Exchange(exchange.directory, 3, exchange.token, open_seconds=0.2)
        results = _run_endpoints(short, [_source()], 3)  # only task 0 runs
    assert isinstance(results[0], ExchangeError)
    assert "did not start within 0.2 s" in str(results[0])


def _stranger(exchange: Exchange, header: bytes, payload: bytes = b"") -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        for _ in range(2_000):
            try:
                sock.connect(exchange.socket_path(0))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                threading.Event().wait(0.005)
        sock.sendall(header + payload)


@pytest.mark.parametrize(("header", "message"), [
    (HEADER.pack(1, b"0" * 32), "refused a connection without the build's token"),
    (b"\x00\x01", "refused a connection without the build's token"),  # cut short
    (b"", "refused a connection without the build's token"),  # says nothing
    ("own", "refused a second or unknown sender 0"),
    ("unknown", "refused a second or unknown sender 7"),
])
def test_a_connection_that_is_not_a_task_of_this_build_is_refused(header: Any, message: str,
                                                                   no_exchange_left: None) -> None:
    with exchange_space(2) as exchange:
        assert exchange is not None
        short = Exchange(exchange.directory, 2, exchange.token, open_seconds=5)
        token = short.token.encode("ascii")
        raw = {"own": HEADER.pack(0, token), "unknown": HEADER.pack(7, token)}.get(header, header)
        stranger = threading.Thread(target=_stranger, args=(short, raw))
        stranger.start()
        results = _run_endpoints(short, [_source()], 2)
        stranger.join()
    assert isinstance(results[0], ExchangeError) and message in str(results[0])


def test_a_peer_with_another_schema_or_more_batches_is_refused(no_exchange_left: None) -> None:
    source = _source()
    renamed = pa.schema([*[*source.schema][:-1], pa.field("surprise", source.schema[-1].type)])
    with exchange_space(2) as exchange:
        assert exchange is not None
        short = Exchange(exchange.directory, 2, exchange.token, open_seconds=5)
        sink = pa.BufferOutputStream()
        pa.ipc.new_stream(sink, renamed).close()
        stranger = threading.Thread(target=_stranger, args=(
            short, HEADER.pack(1, short.token.encode("ascii")), sink.getvalue().to_pybytes()))
        stranger.start()
        results = _run_endpoints(short, [source], 2)
        stranger.join()
    assert isinstance(results[0], ExchangeError) and "task 1 sent another schema" in str(results[0])
    assert "surprise" in str(results[0])

    longer = SyntheticMarketSource(1_500, 5, batch_rows=150, entities=60)  # two batches more than task 0 reads
    with exchange_space(2) as exchange:
        assert exchange is not None
        results = _run_endpoints(exchange, [source, longer], 2)
    assert isinstance(results[0], ExchangeError) and "task 1 sent" in str(results[0])
    assert "rows past the source's last batch" in str(results[0])
    assert isinstance(results[1], ExchangeError) and "task 0's stream ended before batch 8" in str(results[1])


def _endpoint_process(exchange: Exchange, source: SyntheticMarketSource) -> None:
    with ExchangeEndpoint(exchange, 1, source, source.schema, 2,
                          lambda batch: split_batch(batch, ENTITY, 2)) as endpoint:
        for _ in endpoint.cuts():
            pass


def test_a_killed_peer_process_stops_the_build_without_a_hang(no_exchange_left: None) -> None:
    with exchange_space(2) as exchange:
        assert exchange is not None
        peer = multiprocessing.get_context("spawn").Process(
            target=_endpoint_process, args=(exchange, _Killed(1_200, 5, batch_rows=150, entities=60, kill_at=5)))
        peer.start()
        results = _run_endpoints(exchange, [_source()], 2)
        peer.join()
    assert peer.exitcode == -signal.SIGKILL
    assert isinstance(results[0], ExchangeError)
    assert "task 1 stopped without recording an error (killed?)" in str(results[0])


@pytest.mark.parametrize("fail_at", [2, 5])  # a batch of task 0, and of task 1
def test_a_failed_exchanging_build_publishes_nothing_and_names_the_cause(fail_at: int, tmp_path: Path,
                                                                         no_exchange_left: None) -> None:
    source = _Counting(1_200, 5, batch_rows=150, entities=60, fail_at=fail_at)
    with pytest.raises(TaskError, match=f"source went away at batch {fail_at}"):
        _build(source, tmp_path / "out", files=2, executor="process", workers=2)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_killed_task_process_fails_the_build(tmp_path: Path, no_exchange_left: None) -> None:
    source = _Killed(1_200, 5, batch_rows=150, entities=60, kill_at=3)
    with pytest.raises(TaskError, match=r"terminated abruptly|stopped without recording an error"):
        _build(source, tmp_path / "out", files=2, executor="process", workers=2)
    assert list((tmp_path / "out").iterdir()) == []


def test_no_exchange_unless_every_task_runs_at_once_on_a_random_access_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    expected = _from_one_file(_source(), 3, tmp_path / "reference")
    assert concurrent_tasks("inline", 4, 3) == 1 and concurrent_tasks("process", 4, 3) == 3
    with task_session("process", 1):  # a pool of one: two tasks could not exchange, so each reads the source
        assert concurrent_tasks("process", 2, 2) == 1
        assert _shas(_build(_source(), tmp_path / "session", files=3, executor="process", workers=2)) == expected
    sequential = _Sequential(_source())  # no random access: each task reads it through
    assert _shas(_build(sequential, tmp_path / "seq", files=3, executor="process", workers=2)) == expected
    with pytest.raises(ValueError, match="for local executors"):
        concurrent_tasks("ray", 2, 2)


def test_too_long_a_socket_path_means_no_exchange(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   no_exchange_left: None) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    monkeypatch.setattr(exchange_module, "SOCKET_PATH_MAX", 8)  # as if the temporary directory were deep
    with exchange_space(2) as exchange:
        assert exchange is None
    log = tmp_path / "generated.log"
    built = _build(_Logged(1_200, 5, batch_rows=150, entities=60, log=str(log)), tmp_path / "out", files=2,
                   executor="process", workers=2)
    indices = [int(line.split()[1]) for line in log.read_text(encoding="utf-8").splitlines()]
    assert sorted(indices) == sorted(list(range(8)) * 2)  # each task read the whole source
    assert _shas(built) == _from_one_file(_source(), 2, tmp_path / "reference")


def test_only_the_first_error_is_kept(no_exchange_left: None) -> None:
    with exchange_space(2) as exchange:
        assert exchange is not None
        assert exchange.peer_error(1) == "task 1 stopped without recording an error (killed?)"
        exchange.record_error(1, ValueError("first"))
        exchange.record_error(1, KeyError("second"))
        assert exchange.peer_error(1) == "task 1 failed: ValueError: first"
    with pytest.raises(ValueError, match="task 2 of 2 is not a task of an exchange over 2 files"):
        ExchangeEndpoint(exchange, 2, _source(), _source().schema, 2, lambda batch: [batch])
