"""sfu.vod.canvas: the yuv420p canvas (colours as swscale makes them, planes placed on the chroma
grid, padded line sizes) and the encoder's 360p picture as one swscale pass from the 720p one."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter

from sfu.config.ladder import DEFAULT_LADDER
from sfu.vod.canvas import (
    BLACK,
    blit,
    fill,
    new_canvas,
    planes_of,
    scale_yuv420p,
    yuv_of_rgb,
)
from sfu.vod.hls import RenditionEncoder
from sfu.vod.layout import Rect


@pytest.mark.parametrize(
    "rgb", [(0, 0, 0), (255, 255, 255), (32, 32, 32), (210, 40, 40), (40, 200, 40), (9, 99, 199)]
)
def test_yuv_of_rgb_is_what_swscale_makes(rgb: tuple[int, int, int]) -> None:
    img = np.empty((16, 16, 3), dtype=np.uint8)
    img[:] = rgb
    planes = planes_of(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p"))
    got = yuv_of_rgb(rgb)
    assert abs(int(planes.y[8, 8]) - got.y) <= 1
    assert abs(int(planes.u[4, 4]) - got.u) <= 1
    assert abs(int(planes.v[4, 4]) - got.v) <= 1


def test_planes_of_a_padded_frame_write_through() -> None:
    """322 pixels wide: libav pads the lines (line_size > width); the views must not."""
    frame, planes = new_canvas(322, 242)
    assert frame.planes[0].line_size > 322
    assert planes.y.shape == (242, 322) and planes.u.shape == (121, 161)
    fill(planes, Rect(2, 4, 320, 2), yuv_of_rgb((210, 40, 40)))
    rgb = frame.to_ndarray(format="rgb24")
    assert np.abs(rgb[4, 100].astype(int) - (210, 40, 40)).max() <= 3
    assert rgb[0, 100].max() <= 2  # black background around it
    assert np.abs(rgb[4:6, 2:322].astype(int) - (210, 40, 40)).max() <= 3
    with pytest.raises(ValueError, match="yuv420p"):
        planes_of(av.VideoFrame(16, 16, "rgb24"))


def test_fill_and_blit_place_every_plane() -> None:
    _frame, canvas = new_canvas(64, 48)
    assert (canvas.y == BLACK.y).all() and (canvas.u == BLACK.u).all()
    assert (canvas.v == BLACK.v).all()
    _src, pic = new_canvas(20, 10)
    pic.y[:] = np.arange(20, dtype=np.uint8)[None, :] + 100
    pic.u[:] = 60
    pic.v[:] = 200
    blit(canvas, Rect(10, 6, 20, 10), pic)
    assert (canvas.y[6:16, 10:30] == pic.y).all()
    assert (canvas.u[3:8, 5:15] == 60).all() and (canvas.v[3:8, 5:15] == 200).all()
    # nothing outside the rectangle changed
    assert (canvas.y[:6] == BLACK.y).all() and (canvas.y[16:] == BLACK.y).all()
    assert (canvas.y[:, :10] == BLACK.y).all() and (canvas.y[:, 30:] == BLACK.y).all()
    assert (canvas.u[:3] == BLACK.u).all() and (canvas.u[:, 15:] == BLACK.u).all()
    grey = yuv_of_rgb((32, 32, 32))
    fill(canvas, Rect(40, 20, 8, 8), grey)
    assert (canvas.y[20:28, 40:48] == grey.y).all() and (canvas.u[10:14, 20:24] == grey.u).all()
    with pytest.raises(ValueError, match="chroma grid"):
        fill(canvas, Rect(1, 0, 8, 8), grey)
    with pytest.raises(ValueError, match="does not fit"):
        blit(canvas, Rect(0, 0, 20, 12), pic)
    with pytest.raises(ValueError, match="even"):
        new_canvas(63, 48)


def test_scale_passes_a_right_sized_frame_through() -> None:
    reformatter = VideoReformatter()
    frame, _ = new_canvas(64, 48)
    assert scale_yuv420p(reformatter, frame, 64, 48) is frame
    small = scale_yuv420p(reformatter, frame, 32, 24)
    assert (small.width, small.height, small.format.name) == (32, 24, "yuv420p")
    assert (planes_of(small).y == BLACK.y).all()


def test_360p_picture_is_one_downscale_of_the_720p_canvas(tmp_path: Path) -> None:
    """What the 360p encoder encodes is the 720p canvas scaled once by swscale (bilinear), and
    the 720p encoder takes the canvas frame itself."""
    frame, canvas = new_canvas(1280, 720)
    rng = np.random.default_rng(7)
    canvas.y[:] = rng.integers(16, 236, canvas.y.shape, dtype=np.uint8)
    canvas.u[:] = rng.integers(16, 241, canvas.u.shape, dtype=np.uint8)
    red = yuv_of_rgb((210, 40, 40))
    fill(canvas, Rect(100, 100, 400, 300), red)
    big, small = (RenditionEncoder(tmp_path, r) for r in DEFAULT_LADDER)
    try:
        assert big.picture(frame) is frame
        pic = small.picture(frame)
        assert (pic.width, pic.height, pic.format.name) == (640, 360, "yuv420p")
        ref = planes_of(frame.reformat(640, 360, "yuv420p", interpolation="BILINEAR"))
        got = planes_of(pic)
        assert (got.y == ref.y).all() and (got.u == ref.u).all() and (got.v == ref.v).all()
        # the flat red block is at half the coordinates, same colour
        assert (got.y[60:190, 60:240] == red.y).all()
        assert (got.u[30:95, 30:120] == red.u).all() and (got.v[30:95, 30:120] == red.v).all()
        # again: the encoder's swscale context is reused, same result
        again = planes_of(small.picture(frame))
        assert (again.y == got.y).all()
    finally:
        big.abort()
        small.abort()
