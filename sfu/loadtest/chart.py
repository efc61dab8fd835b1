"""``--chart``: the SFU's CPU and the received frame rate against the number of rooms live.

matplotlib (the ``loadtest`` or ``test`` extra) is imported only here, and this module only
when ``--chart`` is given, so the tool runs without it otherwise.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _by_rooms(timeline: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    groups: dict[int, list[float]] = defaultdict(list)
    for point in timeline:
        value = point.get(key)
        if value is not None:
            groups[int(point["rooms_live"])].append(float(value))
    rooms = sorted(groups)
    return rooms, [sum(groups[r]) / len(groups[r]) for r in rooms]


def _points(timeline: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(int(p["rooms_live"]), float(p[key])) for p in timeline if p.get(key) is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]


def options_rooms(result: dict[str, Any]) -> int:
    rooms = result.get("options", {}).get("rooms")
    return int(rooms) if isinstance(rooms, int) else 0


def write_chart(result: dict[str, Any], path: Path) -> None:
    """Two panels sharing the x axis (rooms live): CPU cores (SFU and this client), and video
    fps (mean and min over subscriptions). Dots are the one-second samples, lines their mean
    at each room count."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ChartUnavailable(
            "--chart needs matplotlib: pip install 'cotept-sfu[loadtest]'"
        ) from exc
    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    timeline: list[dict[str, Any]] = result["timeline"]
    figure, (cpu_axes, fps_axes) = pyplot.subplots(2, 1, sharex=True, figsize=(8, 6))
    try:
        series = (
            ("sfu_cpu_cores", "SFU", "tab:red", cpu_axes),
            ("client_cpu_cores", "load-test client", "tab:gray", cpu_axes),
            ("video_fps_mean", "mean", "tab:blue", fps_axes),
            ("video_fps_min", "min", "tab:orange", fps_axes),
        )
        for key, label, color, axes in series:
            xs, ys = _points(timeline, key)
            axes.scatter(xs, ys, s=8, alpha=0.35, color=color)
            mean_x, mean_y = _by_rooms(timeline, key)
            axes.plot(mean_x, mean_y, marker="o", color=color, label=label)
        cpu_axes.set_ylabel("CPU (cores)")
        cpu_axes.set_ylim(bottom=0)
        cpu_axes.legend(loc="upper left")
        cpu_axes.grid(alpha=0.3)
        fps_axes.set_ylabel("received video fps")
        fps_axes.set_ylim(bottom=0)
        fps_axes.set_xlabel("rooms live")
        fps_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        most = max((int(p["rooms_live"]) for p in timeline), default=0)
        fps_axes.set_xlim(-0.5, max(most, int(options_rooms(result))) + 0.5)
        fps_axes.legend(loc="lower left")
        fps_axes.grid(alpha=0.3)
        options = result.get("options", {})
        title = (
            f"sfu loadtest: {options.get('rooms')} rooms, {options.get('codec')} "
            f"{options.get('video_kbps')} kbit/s, {options.get('observers')} observers/room"
        )
        per_node: dict[str, int] = result.get("rooms_per_node") or {}
        if len(per_node) > 1:
            placed = ", ".join(f"{node} {count}" for node, count in per_node.items())
            title += f"\nrooms per node: {placed} (SFU CPU: the --url node's)"
        figure.suptitle(title)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=100)
    finally:
        pyplot.close(figure)
    logger.info("wrote chart %s", path)
