"""The edge: REST handlers, WebSocket signalling, tokens, errors to codes. Never touches RTP."""
