"""BatchDrain: every recorder's queue in one worker-thread job per interval; one recorder's
failure never keeps the others from being written; removal waits for an in-flight batch."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from sfu.recording.drain import FLUSH_INTERVAL_S, BatchDrain, FailureLog, _process_all
from sfu.recording.recorder import RECORDER_THREAD, recording_executor


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.jobs = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


class FakeRecorder:
    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.queue: list[int] = []
        self.written: list[int] = []
        self.done: list[int] = []
        self.threads: set[str] = set()
        self.gate: threading.Event | None = None

    def take_batch(self) -> object | None:
        if not self.queue:
            return None
        batch, self.queue = self.queue, []
        return batch

    def process_batch(self, batch: object) -> int:
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise OSError("disk full")
        assert isinstance(batch, list)
        self.written += batch
        return len(batch)

    def batch_done(self, written: int) -> None:
        self.done.append(written)


async def test_one_job_per_interval_for_all_recorders_and_failures_stay_local() -> None:
    executor = CountingExecutor()
    drain = BatchDrain(executor, asyncio.get_running_loop())
    recorders = [FakeRecorder("a"), FakeRecorder("b", fail=True), FakeRecorder("c")]
    for recorder in recorders:
        drain.add(recorder)
    try:
        for tick in range(3):
            for recorder in recorders:
                recorder.queue += [tick * 10 + i for i in range(5)]
            await asyncio.sleep(FLUSH_INTERVAL_S * 1.6)
        a, b, c = recorders
        assert a.written == c.written == [t * 10 + i for t in range(3) for i in range(5)]
        assert b.written == [] and b.done == [0, 0, 0]  # its failures cost only its own batches
        assert a.done == c.done == [5, 5, 5]
        assert executor.jobs == 3  # one hop per interval, not one per recorder
        assert a.threads == c.threads and threading.current_thread().name not in a.threads
    finally:
        await drain.close()
        executor.shutdown()


async def test_remove_waits_for_the_batch_in_flight() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    drain = BatchDrain(executor, asyncio.get_running_loop())
    recorder = FakeRecorder("slow")
    recorder.gate = threading.Event()
    drain.add(recorder)
    recorder.queue = [1, 2, 3]
    drain.wake()
    try:
        for _ in range(50):
            if recorder.threads:
                break
            await asyncio.sleep(0.02)
        assert recorder.threads, "the batch never reached the worker"
        removal = asyncio.ensure_future(drain.remove(recorder))
        await asyncio.sleep(0.1)
        assert not removal.done()  # the batch is still being written
        recorder.gate.set()
        await asyncio.wait_for(removal, 5)
        assert recorder.written == [1, 2, 3]
        assert drain.recorders == []
    finally:
        recorder.gate.set()
        await drain.close()
        executor.shutdown()


def test_the_recorder_thread_is_named_for_operators() -> None:
    """`top -H` and /proc/PID/task/*/comm show the recorder's OS thread by name, so its CPU
    can be told apart from the event loop's (the benchmarks read it there)."""

    def comm() -> str:
        return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    assert recording_executor().submit(comm).result(timeout=10) == RECORDER_THREAD
    assert comm() != RECORDER_THREAD  # only that thread


def test_a_recorder_that_keeps_failing_is_logged_once_then_summed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk fails every batch, four times a second: the first failure is logged with its
    traceback, then a count at most every FAILURE_LOG_INTERVAL_S, and one line when writing
    works again; every failure is counted in sfu_recording_write_errors_total."""
    failures: weakref.WeakKeyDictionary[Any, FailureLog] = weakref.WeakKeyDictionary()
    broken, fine = FakeRecorder("broken", fail=True), FakeRecorder("fine")
    before = REGISTRY.get_sample_value("sfu_recording_write_errors_total") or 0.0
    with caplog.at_level(logging.WARNING, logger="sfu.recording.drain"):
        for i in range(10):
            assert _process_all([(broken, [i]), (fine, [i])], failures) == [0, 1]
        assert fine.written == list(range(10))
        assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None
        monkeypatch.setattr("sfu.recording.drain.FAILURE_LOG_INTERVAL_S", 0.0)
        _process_all([(broken, [10])], failures)
        assert len(caplog.records) == 2
        assert "10 more batches failed" in caplog.records[1].getMessage()
        broken.fail = False
        assert _process_all([(broken, [11])], failures) == [1]
        assert "writing again" in caplog.records[2].getMessage()
        assert broken not in failures
    after = REGISTRY.get_sample_value("sfu_recording_write_errors_total")
    assert after == before + 11
