"""The programme canvas in yuv420p: numpy views on the planes of PyAV frames.

The composition never leaves yuv420p: a source picture is scaled by swscale straight to its
slot size in yuv420p (`scale_yuv420p`), and its Y/U/V planes are copied into the canvas frame's
planes with numpy slicing. Every rectangle placed here has even offsets and sizes (the layout
guarantees it), so the chroma planes take exactly the half-size rectangle.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt
from av.video.reformatter import VideoReformatter

from sfu.vod.layout import Rect

ByteArray = npt.NDArray[np.uint8]
YUV_FORMAT = "yuv420p"


@dataclass(frozen=True, slots=True)
class Yuv:
    """One colour in limited-range (video) BT.601 Y'CbCr, as swscale's RGB conversion makes."""

    y: int
    u: int
    v: int


def yuv_of_rgb(rgb: tuple[int, int, int]) -> Yuv:
    """BT.601 limited range: what `VideoFrame.reformat(format="yuv420p")` makes of an rgb24
    pixel (swscale's default matrix), rounded."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return Yuv(*(min(255, max(0, round(c))) for c in (y, u, v)))


BLACK = Yuv(16, 128, 128)


@dataclass(frozen=True, slots=True)
class Planes:
    """Y (h x w), U and V (h/2 x w/2) of a yuv420p picture, views without line padding."""

    y: ByteArray
    u: ByteArray
    v: ByteArray

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])


def planes_of(frame: av.VideoFrame) -> Planes:
    """Views on a yuv420p frame's planes (writable when the frame's buffers are)."""
    if frame.format.name != YUV_FORMAT:
        raise ValueError(f"expected a {YUV_FORMAT} frame, got {frame.format.name}")
    views: list[ByteArray] = []
    for plane in frame.planes[:3]:
        flat: ByteArray = np.frombuffer(memoryview(plane), dtype=np.uint8)
        views.append(flat.reshape(plane.height, plane.line_size)[:, : plane.width])
    return Planes(*views)


def new_canvas(width: int, height: int, background: Yuv = BLACK) -> tuple[av.VideoFrame, Planes]:
    """A fresh yuv420p frame filled with `background`, and writable views on its planes."""
    if width % 2 or height % 2:
        raise ValueError(f"canvas {width}x{height}: yuv420p needs even sizes")
    frame = av.VideoFrame(width, height, YUV_FORMAT)
    planes = planes_of(frame)
    planes.y.fill(background.y)
    planes.u.fill(background.u)
    planes.v.fill(background.v)
    return frame, planes


def _check_even(rect: Rect) -> None:
    if rect.x % 2 or rect.y % 2 or rect.w % 2 or rect.h % 2:
        raise ValueError(f"{rect} is not on the 2x2 chroma grid")


def fill(canvas: Planes, rect: Rect, colour: Yuv) -> None:
    """Paint `rect` (even offsets and sizes) with one colour."""
    _check_even(rect)
    x, y, w, h = rect.x, rect.y, rect.w, rect.h
    canvas.y[y : y + h, x : x + w] = colour.y
    cx, cy, cw, ch = x // 2, y // 2, w // 2, h // 2
    canvas.u[cy : cy + ch, cx : cx + cw] = colour.u
    canvas.v[cy : cy + ch, cx : cx + cw] = colour.v


def blit(canvas: Planes, box: Rect, picture: Planes) -> None:
    """Copy `picture` (box.w x box.h) into the canvas at (box.x, box.y), even offsets."""
    _check_even(box)
    if (picture.width, picture.height) != (box.w, box.h):
        raise ValueError(f"picture {picture.width}x{picture.height} does not fit {box}")
    x, y, w, h = box.x, box.y, box.w, box.h
    canvas.y[y : y + h, x : x + w] = picture.y
    cx, cy, cw, ch = x // 2, y // 2, w // 2, h // 2
    canvas.u[cy : cy + ch, cx : cx + cw] = picture.u
    canvas.v[cy : cy + ch, cx : cx + cw] = picture.v


def scale_yuv420p(
    reformatter: VideoReformatter, frame: av.VideoFrame, width: int, height: int
) -> av.VideoFrame:
    """`frame` scaled to width x height in yuv420p by swscale (bilinear, PyAV's default); the
    frame itself when it already is that. One reformatter per caller keeps its swscale context
    across frames (`VideoFrame.reformat` makes a new one for every frame). One swscale thread:
    the pipeline's parallelism is in its own threads (`sfu.vod.pipeline`)."""
    out: av.VideoFrame = reformatter.reformat(
        frame, width, height, YUV_FORMAT, interpolation="BILINEAR", threads=1
    )
    return out
