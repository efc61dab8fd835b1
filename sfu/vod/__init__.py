"""The VOD worker: a recorded session folder to an HLS programme in object storage."""
