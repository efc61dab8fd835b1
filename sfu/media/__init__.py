"""The RTP path: the tap on a publisher's receiver, the per-subscriber rewriter and sender,
keyframe and NACK relay. The only package that touches aiortc internals (see seams.py)."""
