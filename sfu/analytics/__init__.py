"""Storage analytics (`sfu analytics serve`, `sfu lifecycle ingest-logs`): plays per session,
their decayed score, and the storage figures exported to Prometheus."""
