"""sselab sims."""
