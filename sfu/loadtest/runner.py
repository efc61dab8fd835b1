"""`sfu loadtest`: rooms started over the ramp, sampled once a second, torn down at the end.

Timeline of a run (``t`` from the first join): room ``i`` is created and joined at
``i * ramp / rooms``; every second the SFU's /metrics, this process's CPU and every
subscription's counters are sampled; at ``duration`` the last sample is taken, joins still in
progress are cancelled, every participant leaves and every room the tool created is deleted
(and checked gone), so a run leaves nothing behind.

With ``--churn S`` each of the ``rooms`` slots turns over: its room lives S seconds from its
joins, then everyone leaves, it is deleted, and a new room (a new id, the first and then every
``--churn-record-every`` Nth one recorded) is created and joined in its place, until the end.
A departed room's subscriptions keep the counters they had when it left.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import resource
import sys
import time
import uuid
from dataclasses import asdict
from typing import Any

import aiohttp

from sfu.client.direct_publish import prepare_clip
from sfu.loadtest.metrics_poll import MetricsPoller, SfuSample
from sfu.loadtest.options import LoadtestOptions, OptionsError, options_from_args
from sfu.loadtest.progress import Progress, ProgressState
from sfu.loadtest.report import (
    JoinRecord,
    RunFacts,
    SubscriptionResult,
    TimelinePoint,
    build_result,
    text_table,
)
from sfu.loadtest.room import LoadtestRoom, audio_clip, video_clip
from sfu.loadtest.sampling import SETTLE_S, SubscriptionTracker, loss_counters, receiver_of

logger = logging.getLogger(__name__)

TICK_S = 1.0
TEARDOWN_TIMEOUT_S = 30.0


def client_cpu_seconds() -> float:
    """User + system CPU of this process, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


def prepare_clips(options: LoadtestOptions) -> None:
    """Build (once, cached on disk), load and (direct publisher) packetize the clips before
    anything is timed."""
    clips = [video_clip(options)]
    if options.audio:
        clips.append(audio_clip())
    if options.publisher == "direct":
        for clip in clips:
            prepare_clip(clip)


class LoadtestRun:
    def __init__(self, options: LoadtestOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.rooms: list[LoadtestRoom] = []
        self.trackers: dict[tuple[str, str, str], SubscriptionTracker] = {}
        self.timeline: list[TimelinePoint] = []
        self.errors: list[str] = []
        self.t0 = 0.0
        self.all_live_at: float | None = None
        self._cpu_at: tuple[float, float] | None = None
        self._poller: MetricsPoller | None = None
        self._last_sfu: SfuSample | None = None
        self._run_id = uuid.uuid4().hex[:8]
        self.churn_cycles = 0
        self.churn_deleted = 0

    # --- sampling ------------------------------------------------------------------------

    def _discover(self) -> None:
        """Start tracking every remote track that appeared since the last tick."""
        for room in self.rooms:
            roles = {p.participant_id: p.role for p in room.participants if p.client}
            for participant in room.participants:
                client = participant.client
                if client is None:
                    continue
                for track_id, info in list(client.remote_tracks.items()):
                    key = (room.room_id, participant.user, track_id)
                    tracker = self.trackers.get(key)
                    if tracker is not None:
                        if tracker.rtp_receiver is None:
                            tracker.rtp_receiver = receiver_of(client.subscriber, info.mid)
                        continue
                    self.trackers[key] = SubscriptionTracker(
                        room_id=room.room_id,
                        receiver=participant.user,
                        receiver_role=participant.role,
                        publisher_role=roles.get(info.participant_id, "unknown"),
                        info=info,
                        decoded=participant.decode,
                        rtp_receiver=receiver_of(client.subscriber, info.mid),
                    )

    async def _tick(self) -> TimelinePoint:
        now = time.monotonic()
        sfu_cores: float | None = None
        rss_mib: float | None = None
        assert self._poller is not None
        sample = await self._poller.scrape()
        if sample is not None:
            self._last_sfu = sample
            sfu_cores = self._poller.rate(sample)
            rss_mib = sample.rss_bytes / 2**20 if sample.rss_bytes is not None else None
        cpu = client_cpu_seconds()
        client_cores: float | None = None
        if self._cpu_at is not None and now > self._cpu_at[0]:
            client_cores = (cpu - self._cpu_at[1]) / (now - self._cpu_at[0])
        self._cpu_at = (now, cpu)
        self._discover()
        rates = []
        gone = {room.room_id for room in self.rooms if room.leaving}
        for tracker in self.trackers.values():
            if tracker.room_id in gone:
                continue  # left (--churn): its counters stay as they were when it left
            rate = tracker.observe(now)
            if tracker.info.kind == "video" and rate is not None:
                rates.append(rate)
        live = sum(1 for room in self.rooms if room.live)
        if self.all_live_at is None and live == self.options.rooms:
            self.all_live_at = now
        point = TimelinePoint(
            t_s=now - self.t0,
            rooms_live=live,
            sfu_cpu_cores=sfu_cores,
            sfu_rss_mib=rss_mib,
            client_cpu_cores=client_cores,
            video_fps_mean=sum(rates) / len(rates) if rates else None,
            video_fps_min=min(rates) if rates else None,
            video_subscriptions_flowing=len(rates),
        )
        self.timeline.append(point)
        joins = [p.record for room in self.rooms for p in room.participants]
        self.progress.update(
            ProgressState(
                elapsed_s=point.t_s,
                total_s=self.options.duration_s,
                rooms_live=live,
                rooms_total=self.options.rooms,
                joins_ok=sum(1 for j in joins if j.ok),
                joins_failed=sum(1 for j in joins if j.failure),
                video_fps_min=point.video_fps_min,
                sfu_cpu_cores=sfu_cores,
            )
        )
        return point

    # --- the run -------------------------------------------------------------------------

    def _make_rooms(self, http: aiohttp.ClientSession) -> None:
        self._http = http
        for index in range(self.options.rooms):
            self.rooms.append(self._room(index, 0))

    def _room(self, index: int, cycle: int) -> LoadtestRoom:
        """The room of slot ``index``; ``cycle`` counts the rooms of the slot (``--churn``)."""
        options = self.options
        tokens = options.room_tokens[index] if options.room_tokens else None
        room_id = tokens.room_id if tokens is not None else f"lt-{self._run_id}-{index:04d}"
        if options.churn_s is not None:
            room_id += f"-c{cycle}"
        decode = options.decode == "per-room" or (options.decode == "one" and index == 0)
        every = options.churn_record_every
        record = (cycle % every == 0) if every else None
        return LoadtestRoom(
            index, room_id, options, self._http, tokens=tokens, decode_mentee=decode, record=record
        )

    async def _churn(self, room: LoadtestRoom) -> None:
        """One slot of ``--churn``: rooms that live ``churn_s`` each, until the run ends."""
        assert self.options.churn_s is not None
        end = self.t0 + self.options.duration_s
        cycle = 0
        while True:
            await room.start()
            leave_at = time.monotonic() + self.options.churn_s
            await asyncio.sleep(max(0.0, min(leave_at, end) - time.monotonic()))
            if time.monotonic() >= end:
                return  # the run's own teardown takes it
            now = time.monotonic()
            for tracker in self.trackers.values():
                if tracker.room_id == room.room_id:
                    tracker.observe(now)  # the last counters before it goes
            await room.leave()
            self.churn_deleted += await room.delete()
            room.finished = True
            self.churn_cycles += 1
            cycle += 1
            room = self._room(room.index, cycle)
            self.rooms.append(room)

    async def _start_rooms(self) -> None:
        step = self.options.ramp_s / self.options.rooms

        async def start(room: LoadtestRoom) -> None:
            await asyncio.sleep(max(0.0, self.t0 + room.index * step - time.monotonic()))
            if self.options.churn_s is not None:
                await self._churn(room)
            else:
                await room.start()

        first = list(self.rooms)
        outcomes = await asyncio.gather(*(start(room) for room in first), return_exceptions=True)
        for room, outcome in zip(first, outcomes, strict=True):
            if isinstance(outcome, Exception):  # a bug, not a refusal: those are recorded
                logger.error("room %s: %r", room.room_id, outcome)
                self.errors.append(f"room {room.room_id}: {outcome!r}")

    async def run(self) -> dict[str, Any]:
        options = self.options
        started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        prepare_clips(options)
        connector = aiohttp.TCPConnector(limit=0)  # one connection per WebSocket, unbounded
        async with aiohttp.ClientSession(connector=connector) as http:
            self._poller = MetricsPoller(http, options.url)
            self._make_rooms(http)
            await self._poller.scrape()  # the baseline of counters and CPU
            if self._poller.first is not None:
                self._poller.rate(self._poller.first)
            self._cpu_at = (time.monotonic(), client_cpu_seconds())
            cpu_start = self._cpu_at[1]
            self.t0 = time.monotonic()
            end = self.t0 + options.duration_s
            starter = asyncio.create_task(self._start_rooms())
            try:
                while True:
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        break
                    await asyncio.sleep(min(TICK_S, remaining))
                    await self._tick()
                final_sfu = self._last_sfu
                subscriptions = self._results()
                for room in self.rooms:
                    room.note_disconnects()
            finally:
                starter.cancel()
                await asyncio.wait([starter], timeout=TEARDOWN_TIMEOUT_S)
                wall = time.monotonic() - self.t0
                cpu_total = client_cpu_seconds() - cpu_start
                left_behind, deleted = await self._teardown()
        joins = self._joins()
        steady_from = None
        if self.all_live_at is not None:
            steady_from = self.all_live_at - self.t0 + SETTLE_S
        facts = RunFacts(
            started_at=started_at,
            wall_s=wall,
            rooms_requested=options.rooms,
            rooms_created=[r.room_id for r in self.rooms if r.created],
            room_failures=_count(r.create_failure for r in self.rooms),
            rooms_deleted=deleted + self.churn_deleted,
            rooms_left_behind=left_behind,
            max_rooms_live=max((p.rooms_live for p in self.timeline), default=0),
            steady_from_s=steady_from,
            sfu_counter_changes=self._poller.counter_changes(final_sfu),
            sfu_scrape_errors=self._poller.errors,
            client_cpu_seconds=cpu_total,
            errors=self.errors,
            room_nodes={r.room_id: r.node_id for r in self.rooms if r.node_id is not None},
        )
        result = build_result(_options_json(options), joins, subscriptions, self.timeline, facts)
        if options.churn_s is not None:
            result["churn"] = {
                "room_lifetime_s": options.churn_s,
                "rooms_turned_over": self.churn_cycles,
                "rooms_recorded": sum(1 for r in self.rooms if r.created and r.record),
            }
        return result

    def _results(self) -> list[SubscriptionResult]:
        """Every subscription's result and loss, read before anybody leaves."""
        self._discover()
        return [
            tracker.result(loss_counters(tracker.rtp_receiver, tracker.info))
            for _, tracker in sorted(self.trackers.items())
        ]

    def _joins(self) -> list[JoinRecord]:
        records = []
        for room in self.rooms:
            if room.create_failure is not None:
                continue  # never attempted: counted under rooms.failed_by_status
            for participant in room.participants:
                record = participant.record
                if not record.ok and record.failure is None:
                    record.failure = "not_finished"
                    record.detail = "still joining when the run ended"
                records.append(record)
        return records

    async def _teardown(self) -> tuple[list[str], int]:
        """Leave, delete the rooms this tool created, check they are gone."""
        current = [room for room in self.rooms if not room.finished]
        try:
            async with asyncio.timeout(TEARDOWN_TIMEOUT_S):
                await asyncio.gather(*(room.leave() for room in current))
        except TimeoutError:
            self.errors.append(f"participants did not all leave within {TEARDOWN_TIMEOUT_S} s")
        owned = [room for room in current if room.created]
        deleted = await asyncio.gather(*(room.delete() for room in owned))
        exists = await asyncio.gather(*(room.exists() for room in owned))
        left = [room.room_id for room, there in zip(owned, exists, strict=True) if there]
        unknown = [room.room_id for room, there in zip(owned, exists, strict=True) if there is None]
        if unknown:
            self.errors.append(f"could not check that these rooms are gone: {unknown}")
        return left, sum(1 for ok in deleted if ok)


def _count(labels: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label in labels:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    return counts


def _options_json(options: LoadtestOptions) -> dict[str, Any]:
    data = asdict(options)
    data["secret"] = "<set>" if options.secret else None
    data["room_tokens"] = [room.room_id for room in options.room_tokens]
    for key in ("json_path", "chart_path"):
        data[key] = str(data[key]) if data[key] is not None else None
    return data


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        for noisy in ("aiortc", "aioice"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def main(args: argparse.Namespace) -> int:
    """Entry point of `sfu loadtest`: 0 when it ran (whatever it measured), 2 for a bad
    option, 1 when the result could not be written."""
    try:
        options = options_from_args(args)
    except OptionsError as exc:
        print(f"sfu loadtest: {exc}", file=sys.stderr)
        return 2
    _configure_logging(options.verbose)
    if options.chart_path is not None:
        try:
            import matplotlib  # noqa: F401  (checked before the run, used after it)
        except ImportError:
            print(
                "sfu loadtest: --chart needs matplotlib: pip install 'cotept-sfu[loadtest]'",
                file=sys.stderr,
            )
            return 2
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    progress = Progress(options.progress)
    result = asyncio.run(LoadtestRun(options, progress).run())
    progress.finish()
    print(text_table(result))
    status = 0
    if options.json_path is not None:
        try:
            options.json_path.parent.mkdir(parents=True, exist_ok=True)
            options.json_path.write_text(json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            print(f"sfu loadtest: cannot write {options.json_path}: {exc}", file=sys.stderr)
            status = 1
        else:
            print(f"wrote {options.json_path}")
    if options.chart_path is not None:
        from sfu.loadtest.chart import write_chart

        try:
            write_chart(result, options.chart_path)
        except OSError as exc:
            print(f"sfu loadtest: cannot write {options.chart_path}: {exc}", file=sys.stderr)
            status = 1
        else:
            print(f"wrote {options.chart_path}")
    return status
