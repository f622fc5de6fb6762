"""sselab service."""
