"""Helpers for exercising the service against real faults (tests and benchmarks)."""
