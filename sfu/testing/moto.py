"""moto's standalone S3 server as a subprocess on loopback, for tests and benches that speak S3.

Its log goes to a temporary file, never to a pipe nobody reads: werkzeug writes a line per
request, and a full pipe (64 KiB, a few hundred requests) would block the server mid-answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from sfu.testing.process import free_tcp_port

START_TIMEOUT_S = 30.0


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's server, wait until it answers, yield its endpoint URL, stop it."""
    port = free_tcp_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    tail = log.read()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"moto server exited with {process.returncode}: {tail}")
                try:
                    with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                        break
                except (urllib.error.URLError, OSError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"moto server not answering on {endpoint}") from None
                    time.sleep(0.1)
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
