"""Metrics (and, later, tracing and structured logs): what on-call sees of a process."""
