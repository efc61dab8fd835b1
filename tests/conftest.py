from __future__ import annotations

from collections.abc import Iterator

import pytest

from sfu.testing.process import SfuProcess, make_sfu


@pytest.fixture(scope="session")
def sfu() -> Iterator[SfuProcess]:
    """One real SFU process shared by the integration tests (rooms keep tests apart)."""
    server = make_sfu(46000, 46200, name="sfu-shared")
    server.start()
    yield server
    server.stop()
