"""CoTePT media plane: WebRTC SFU, recorder and VOD pipeline."""

__version__ = "0.1.0"
