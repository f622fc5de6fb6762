"""sselab model."""
