"""Recording published tracks to Matroska files without decoding (see docs in session.py)."""

from sfu.recording.assembler import Frame, FrameAssembler
from sfu.recording.recorder import TrackRecorder
from sfu.recording.session import RecordingSession, SessionManifest, find_unfinished

__all__ = [
    "Frame",
    "FrameAssembler",
    "RecordingSession",
    "SessionManifest",
    "TrackRecorder",
    "find_unfinished",
]
