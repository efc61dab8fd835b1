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


@pytest.fixture(scope="session")
def sfu_one_port() -> Iterator[SfuProcess]:
    """A second shared SFU with all its media on one UDP port (SFU_RTC_UDP_PORT), for the
    media tests that run on both (tests/integration/test_media.py, test_rtcp.py)."""
    server = make_sfu(46300, 46301, name="sfu-one-port", SFU_RTC_UDP_PORT="46310")
    server.start()
    yield server
    server.stop()
