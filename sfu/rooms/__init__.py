"""The domain: rooms, participants, publications and subscriptions. Decides who gets what."""
