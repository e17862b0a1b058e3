"""The HTTP edge of the daemon: health now; the API and webhooks plug in here."""
