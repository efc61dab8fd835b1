"""Signed webhooks to the backend (docs/api.md): room, participant, track and recording events."""
