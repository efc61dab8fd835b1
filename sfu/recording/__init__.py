"""Recording: the recorder tap, the session on disk, and the hand-off to the VOD worker."""
