"""Signed webhooks to the backend (docs/api.md §5): room, participant, track and recording
events."""
