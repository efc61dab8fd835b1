"""Headless aiortc client that speaks the signalling contract: `sfu.client.client.SfuClient`,
with pre-encoded, paced media from `sfu.client.clips`."""
