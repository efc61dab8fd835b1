"""`sfu loadtest`: headless aiortc clients that speak the contract against a running SFU.

Modules: `options` (the command line, validated into a dataclass), `runner` (rooms, ramp,
lifecycle), `room` (one room's mentor, mentee and observers), `sampling` (per-subscription
counters and loss), `metrics_poll` (the SFU's /metrics), `report` (statistics, the JSON result,
the table), `progress`, `chart` (matplotlib, imported only for ``--chart``).
"""
