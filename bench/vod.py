"""VOD worker speed: `render_session` against Debian's `ffmpeg` CLI doing the same ladder.

Run:
    python -m bench.vod --seconds 60 --repeat 2 --json bench/results/vod.json

A synthetic session is written once (mentor + mentee 640x480 30 fps VP8 cameras with moving
content, two mono Opus mics, the mentee's starting late, a 1280x720 15 fps VP8 screen share
for the middle third). On the same files, round robin `--repeat` times (medians reported):
`render_session` (wall time, this process's CPU, all threads) and `ffmpeg` doing the same job
as one filter_complex with the same layout, audio mix, ladder and encoder settings as
`sfu/vod/hls.py` (wall time, child CPU). x264 threads: the headline CLI run keeps `-threads 2`
per encoder (`CLI_X264_THREADS`: ffmpeg's frame threads, the faster CLI); a second run uses
the worker's `X264_THREADS` (1 per rendition, which the worker needs for byte-identical
output), i.e. identical encoder settings. Every output is decoded back and checked.
`--breakdown` (on by default) times single-threaded passes of the worker's composition alone
and of everything that is not x264 or muxing (composition, 360p swscale, the one AAC encode).
ffmpeg is only used here, never by the worker. Details: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from sfu.config.ladder import DEFAULT_LADDER
from sfu.recording.manifest import load_manifest
from sfu.vod.canvas import scale_yuv420p
from sfu.vod.compose import VideoEvent, programme
from sfu.vod.hls import (
    AUDIO_BITRATE,
    FPS,
    SEGMENT_PATTERN,
    SEGMENT_S,
    X264_PRESET,
    X264_THREADS,
    AudioEncoder,
)
from sfu.vod.render import render_session

CAM_W, CAM_H, CAM_FPS = 640, 480, 30
SCREEN_W, SCREEN_H, SCREEN_FPS = 1280, 720, 15
MENTEE_MIC_START = 2.0
CLI_X264_THREADS = 2  # the headline CLI run: what ffmpeg was measured with from the start
DURATION_TOLERANCE_S = 0.5
START = datetime(2025, 1, 2, 3, 0, 0, tzinfo=UTC)


# -- synthetic session ---------------------------------------------------------------------------


def _write_video(
    path: Path, width: int, height: int, fps: int, seconds: float, rgb: tuple[int, int, int]
) -> None:
    """VP8 in Matroska: a flat colour with a moving square and a moving bar (real motion)."""
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("libvpx", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.bit_rate = 1_000_000 if width <= 640 else 1_500_000
        s.options = {"deadline": "realtime", "cpu-used": "8"}
        base = np.empty((height, width, 3), dtype=np.uint8)
        base[:] = rgb
        ramp = (np.arange(width, dtype=np.uint16) * 255 // max(1, width - 1)).astype(np.uint8)
        base[height - 40 :, :, :] = ramp[None, :, None]
        box = height // 6
        for i in range(round(seconds * fps)):
            img = base.copy()
            x = (i * 7) % (width - box)
            y = (i * 3) % (height - 40 - box)
            img[y : y + box, x : x + box] = 255
            bar = (i * 5) % width
            img[:, bar : bar + 8] = 0
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            c.mux(s.encode(frame.reformat(format="yuv420p")))
        c.mux(s.encode(None))


def _write_tone(path: Path, hz: float, seconds: float) -> None:
    """Mono Opus in Matroska, 20 ms frames, a tone with a slow amplitude wobble."""
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("libopus", rate=48000, layout="mono")
        s.bit_rate = 32_000
        n = round(seconds * 48000)
        t = np.arange(n) / 48000
        tone = (0.25 * (1 + 0.3 * np.sin(2 * np.pi * 0.5 * t)) * np.sin(2 * np.pi * hz * t)).astype(
            np.float32
        )
        for off in range(0, n - 959, 960):
            frame = av.AudioFrame.from_ndarray(tone[None, off : off + 960], "flt", "mono")
            frame.sample_rate, frame.pts = 48000, off
            frame.time_base = Fraction(1, 48000)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))


def _track(tid: str, pid: str, kind: str, source: str, start: float, end: float) -> dict[str, Any]:
    return {
        "track_id": tid,
        "participant_id": pid,
        "kind": kind,
        "source": source,
        "codec": "opus" if kind == "audio" else "vp8",
        "file": f"tracks/{tid}.mkv",
        "start_s": start,
        "end_s": end,
        "segment": 0,
    }


def build_session(root: Path, seconds: float) -> dict[str, float]:
    """Write manifest.json and tracks/*.mkv under root; returns the share interval."""
    (root / "tracks").mkdir(parents=True, exist_ok=True)
    share0, share1 = round(seconds / 3, 3), round(2 * seconds / 3, 3)
    _write_video(root / "tracks/cam-a.mkv", CAM_W, CAM_H, CAM_FPS, seconds, (200, 60, 50))
    _write_video(root / "tracks/cam-b.mkv", CAM_W, CAM_H, CAM_FPS, seconds, (50, 60, 200))
    _write_video(
        root / "tracks/scr-1.mkv", SCREEN_W, SCREEN_H, SCREEN_FPS, share1 - share0, (40, 180, 60)
    )
    _write_tone(root / "tracks/mic-a.mkv", 220.0, seconds)
    _write_tone(root / "tracks/mic-b.mkv", 330.0, seconds - MENTEE_MIC_START)
    manifest = {
        "session_id": "bench-vod",
        "room_id": "bench",
        "started_at": START.isoformat().replace("+00:00", "Z"),
        "ended_at": (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z"),
        "status": "finalised",
        "participants": [
            {
                "participant_id": pid,
                "user_id": uid,
                "name": name,
                "role": role,
                "joined_at_s": 0.0,
                "left_at_s": seconds,
            }
            for pid, uid, name, role in (
                ("p-mentor", "u1", "Kim", "mentor"),
                ("p-mentee", "u2", "Lee", "mentee"),
            )
        ],
        "tracks": [
            _track("cam-a", "p-mentor", "video", "camera", 0.0, seconds),
            _track("cam-b", "p-mentee", "video", "camera", 0.0, seconds),
            _track("scr-1", "p-mentor", "video", "screen", share0, share1),
            _track("mic-a", "p-mentor", "audio", "microphone", 0.0, seconds),
            _track("mic-b", "p-mentee", "audio", "microphone", MENTEE_MIC_START, seconds),
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    duration = load_manifest(root).duration_s
    return {"share0": share0, "share1": share1, "duration": duration}


def session_share(root: Path) -> dict[str, float]:
    """The share interval and duration of a session written by `build_session` earlier."""
    manifest = load_manifest(root)
    screen = next(t for t in manifest.tracks if t.source == "screen")
    return {"share0": screen.start_s, "share1": screen.end, "duration": manifest.duration_s}


# -- the ffmpeg CLI doing the same job -----------------------------------------------------------


def ffmpeg_command(
    ffmpeg: str,
    session: Path,
    out: Path,
    share: dict[str, float],
    x264_threads: int = CLI_X264_THREADS,
) -> list[str]:
    """The same composition and ladder as render_session, as one ffmpeg invocation.

    Canvas 1280x720 (the ladder's largest), as `sfu.vod.layout.slots` + `fit` place things:
    side by side, each 640x480 camera in a 640x720 half at y=120; during the share, the
    1280x720 screen fitted to 960x540 at (0, 90) and each camera fitted to 320x240 in a
    320x360 cell of the right column (y = 60 and 420).
    """
    s0, s1, dur = share["share0"], share["share1"], share["duration"]
    enable = f"enable='between(t,{s0},{s1})'"
    delay_ms = round(MENTEE_MIC_START * 1000)
    big, small = DEFAULT_LADDER[0], DEFAULT_LADDER[1]
    graph = ";".join(
        [
            f"[0:v]setpts=PTS-STARTPTS,fps={FPS},format=yuv420p,split=2[ma][mb]",
            f"[1:v]setpts=PTS-STARTPTS,fps={FPS},format=yuv420p,split=2[ea][eb]",
            "[ma][ea]hstack=inputs=2,pad=1280:720:0:120:black[sbs]",
            f"[2:v]setpts=PTS-STARTPTS+{s0}/TB,scale=960:540,pad=960:720:0:90:black[scr]",
            "[mb]scale=320:240,pad=320:360:0:60:black[ms]",
            "[eb]scale=320:240,pad=320:360:0:60:black[es]",
            "[ms][es]vstack=inputs=2[col]",
            f"[sbs][scr]overlay=0:0:{enable}[v1]",
            f"[v1][col]overlay=960:0:{enable},trim=duration={dur},split=2[v720][vsrc]",
            f"[vsrc]scale={small.width}:{small.height}[v360]",
            "[3:a]aresample=48000,aformat=channel_layouts=stereo[a0]",
            f"[4:a]aresample=48000,aformat=channel_layouts=stereo,adelay={delay_ms}|{delay_ms}[a1]",
            "[a0][a1]amix=inputs=2:duration=longest:normalize=0,"
            f"atrim=duration={dur},asplit=2[a720][a360]",
        ]
    )
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for name in ("cam-a", "cam-b", "scr-1", "mic-a", "mic-b"):
        cmd += ["-i", str(session / "tracks" / f"{name}.mkv")]
    cmd += ["-filter_complex", graph]
    gop = SEGMENT_S * FPS
    for r, v, a in ((big, "[v720]", "[a720]"), (small, "[v360]", "[a360]")):
        d = out / r.name
        d.mkdir(parents=True, exist_ok=True)
        cmd += [
            "-map", v, "-map", a,
            "-c:v", "libx264", "-preset", X264_PRESET, "-profile:v", "main",
            "-level:v", r.level, "-pix_fmt", "yuv420p", "-r", str(FPS),
            "-b:v", str(r.video_bitrate), "-maxrate", str(r.video_bitrate * 11 // 10),
            "-bufsize", str(r.video_bitrate * 2), "-g", str(gop),
            "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0",
            "-threads", str(x264_threads),
            "-c:a", "aac", "-b:a", str(AUDIO_BITRATE), "-ar", "48000", "-ac", "2",
            "-f", "hls", "-hls_time", str(SEGMENT_S), "-hls_playlist_type", "vod",
            "-hls_list_size", "0", "-hls_segment_type", "mpegts",
            "-hls_flags", "independent_segments",
            "-hls_segment_filename", str(d / SEGMENT_PATTERN),
            str(d / "index.m3u8"),
        ]  # fmt: skip
    return cmd


# -- timing and checking -------------------------------------------------------------------------


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(fn: Callable[[], object], cpu: Callable[[], float]) -> tuple[float, float]:
    c0, t0 = cpu(), time.monotonic()
    fn()
    return time.monotonic() - t0, cpu() - c0


def check_output(out: Path, expect_s: float) -> dict[str, Any]:
    """Decode every rendition's playlist: sizes, frame count, video and audio durations."""
    result: dict[str, Any] = {"ok": True, "renditions": {}}
    for r in DEFAULT_LADDER:
        info: dict[str, Any] = {"ok": False}
        playlist = out / r.name / "index.m3u8"
        try:
            with av.open(str(playlist)) as c:
                vs, aus = c.streams.video[0], c.streams.audio[0]
                frames, first, last, size = 0, None, None, None
                for frame in c.decode(vs):
                    if frame.time is None:
                        continue
                    frames += 1
                    first = frame.time if first is None else first
                    last = frame.time
                    size = (frame.width, frame.height)
                v_dur = (last - first) + 1 / FPS if first is not None and last is not None else 0.0
            with av.open(str(playlist)) as c:
                samples, a_first = 0, None
                for aframe in c.decode(c.streams.audio[0]):
                    if aframe.time is not None and a_first is None:
                        a_first = aframe.time
                    samples += aframe.samples
                a_dur = samples / 48000
            info = {
                "ok": size == (r.width, r.height)
                and abs(v_dur - expect_s) <= DURATION_TOLERANCE_S
                and abs(a_dur - expect_s) <= DURATION_TOLERANCE_S,
                "size": f"{size[0]}x{size[1]}" if size else None,
                "frames": frames,
                "video_s": round(v_dur, 3),
                "audio_s": round(a_dur, 3),
                "codecs": f"{vs.codec_context.name}/{aus.codec_context.name}",
                "segments": len(list((out / r.name).glob("*.ts"))),
                "bytes": sum(p.stat().st_size for p in (out / r.name).glob("*.ts")),
            }
        except (av.FFmpegError, OSError, IndexError) as exc:
            info = {"ok": False, "error": str(exc)}
        result["renditions"][r.name] = info
        result["ok"] = result["ok"] and info["ok"]
    return result


def compose_only(session: Path, rest: bool) -> None:
    """The worker's composition in this thread; with `rest`, also the rest of what is not
    x264 or muxing: the smaller renditions' swscale pass and the one AAC encode."""
    manifest = load_manifest(session)
    width = max(r.width for r in DEFAULT_LADDER)
    height = max(r.height for r in DEFAULT_LADDER)
    reformatters = [VideoReformatter() for _ in DEFAULT_LADDER]
    audio = AudioEncoder()
    for event in programme(manifest, session, width, height, FPS):
        if not rest:
            continue
        if isinstance(event, VideoEvent):
            for r, reformatter in zip(DEFAULT_LADDER, reformatters, strict=True):
                scale_yuv420p(reformatter, event.frame, r.width, r.height)
        else:
            audio.encode(event)
    if rest:
        audio.flush()


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "av": av.__version__,
        "libav_in_pyav": str(getattr(av, "ffmpeg_version_info", "?")),
    }


def ffmpeg_version(ffmpeg: str) -> str:
    try:
        done = subprocess.run(
            [ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"? ({exc})"
    return done.stdout.splitlines()[0] if done.stdout else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="session length")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument("--no-breakdown", action="store_true", help="skip compose-only timings")
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep the files")
    parser.add_argument("--timeout", type=float, default=900.0, help="ffmpeg run limit, s")
    parser.add_argument("--session", type=Path, default=None, help="reuse DIR/session (--keep)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (medians)")
    parser.add_argument("--no-matched-cli", action="store_true", help="skip ffmpeg -threads 1")
    args = parser.parse_args()

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print(
            "ffmpeg CLI NOT FOUND on PATH: the comparison needs it "
            "(benchmark only: `apt-get install -y ffmpeg`); the worker alone is timed.",
            file=sys.stderr,
        )

    tmp = tempfile.TemporaryDirectory(prefix="bench-vod-") if args.keep is None else None
    work = Path(tmp.name) if tmp is not None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        build_s = 0.0
        if args.session is not None:
            session = args.session
            share = session_share(session)
        else:
            session = work / "session"
            t0 = time.monotonic()
            share = build_session(session, args.seconds)
            build_s = time.monotonic() - t0
        dur = share["duration"]
        print(f"session: {dur:.1f} s, share {share['share0']}-{share['share1']} s, "
              f"written in {build_s:.1f} s")  # fmt: skip

        outs = {"worker": work / "out-worker"}
        runs: dict[str, Callable[[], object]] = {
            "worker": lambda: render_session(session, outs["worker"])
        }
        cpus = {"worker": _self_cpu}
        cmds: dict[str, list[str]] = {}
        threads_of = {"worker": X264_THREADS}
        if ffmpeg is not None:
            variants = [("ffmpeg", CLI_X264_THREADS)]
            if not args.no_matched_cli and X264_THREADS != CLI_X264_THREADS:
                variants.append(("ffmpeg, worker's x264 threads", X264_THREADS))
            for name, threads in variants:
                outs[name] = work / f"out-ffmpeg-{threads}"
                cmds[name] = ffmpeg_command(ffmpeg, session, outs[name], share, threads)
                runs[name] = partial(subprocess.run, cmds[name], check=True, timeout=args.timeout)
                cpus[name] = _child_cpu
                threads_of[name] = threads

        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for rep in range(max(1, args.repeat)):  # round robin: noise hits every run alike
            for name, fn in runs.items():
                shutil.rmtree(outs[name], ignore_errors=True)
                for r in DEFAULT_LADDER:  # ffmpeg's hls muxer does not make folders
                    (outs[name] / r.name).mkdir(parents=True)
                wall, cpu = timed(fn, cpus[name])
                samples[name].append((wall, cpu))
                print(f"[{rep + 1}] {name}: {wall:.1f} s wall, {cpu:.1f} s CPU")
        rows: dict[str, dict[str, Any]] = {}
        for name, got in samples.items():
            rows[name] = {
                "wall_s": statistics.median(w for w, _ in got),
                "cpu_s": statistics.median(c for _, c in got),
                "walls_s": [round(w, 2) for w, _ in got],
                "check": check_output(outs[name], dur),
                "x264_threads": threads_of[name],
            }

        breakdown: dict[str, Any] = {}
        if not args.no_breakdown:
            w, c = timed(lambda: compose_only(session, False), _self_cpu)
            breakdown["compose (decode, yuv420p canvas, audio mix)"] = {"wall_s": w, "cpu_s": c}
            w, c = timed(lambda: compose_only(session, True), _self_cpu)
            breakdown["compose + 360p scale + AAC (all but x264/mux)"] = {"wall_s": w, "cpu_s": c}
            by_difference = {"wall_s": None, "cpu_s": rows["worker"]["cpu_s"] - c}
            breakdown["x264 + mux, CPU by difference"] = by_difference
    finally:
        if tmp is not None:
            tmp.cleanup()

    for row in rows.values():
        row["x_realtime"] = dur / row["wall_s"] if row["wall_s"] > 0 else 0.0
    lines = [
        "| run | wall s | x real time | CPU s (user+sys) | CPU s / session s | outputs ok |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['wall_s']:.1f} | {row['x_realtime']:.2f} | {row['cpu_s']:.1f} | "
            f"{row['cpu_s'] / dur:.2f} | {'yes' if row['check']['ok'] else 'NO'} |"
        )
    verdict = "ffmpeg CLI missing: no comparison"
    ratio = None
    if "ffmpeg" in rows:
        ratio = rows["worker"]["x_realtime"] / rows["ffmpeg"]["x_realtime"]
        met = ratio >= 1.0
        verdict = (
            f"worker speed / ffmpeg speed = {ratio:.2f}; CPU ratio worker/ffmpeg = "
            f"{rows['worker']['cpu_s'] / rows['ffmpeg']['cpu_s']:.2f}; "
            f"target (worker at least as fast as the CLI): {'met' if met else 'NOT met'}"
        )
        for name in rows:
            if name.startswith("ffmpeg,"):
                other = rows["worker"]["x_realtime"] / rows[name]["x_realtime"]
                verdict += f"; worker speed / ({name}) speed = {other:.2f}"
    print()
    print("\n".join(lines))
    for name, row in rows.items():
        for rname, info in row["check"]["renditions"].items():
            print(f"  {name} {rname}: {info}")
    if breakdown:
        print("worker breakdown (separate passes):")
        for name, b in breakdown.items():
            wall_text = f"{b['wall_s']:.1f} s wall, " if b["wall_s"] is not None else ""
            print(f"  {name}: {wall_text}{b['cpu_s']:.1f} s CPU")
    print(verdict)

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "session_s": dur,
            "share_s": [share["share0"], share["share1"]],
            "build_session_s": build_s,
            "x264": {
                "preset": X264_PRESET,
                "threads_worker": X264_THREADS,
                "threads_cli": CLI_X264_THREADS,
                "gop": SEGMENT_S * FPS,
            },
            "repeat": max(1, args.repeat),
            "runs": rows,
            "breakdown": breakdown,
            "speed_ratio_worker_over_ffmpeg": ratio,
            "verdict": verdict,
            "ffmpeg": ffmpeg,
            "ffmpeg_version": ffmpeg_version(ffmpeg) if ffmpeg else None,
            "ffmpeg_commands": cmds,
            "machine": machine(),
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
