"""The bottom layer: the domain's vocabulary, its errors, time formatting and the token bucket.

Every other package may import from here; nothing here imports from the rest of `sfu`."""
