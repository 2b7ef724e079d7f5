"""Background work: the outbox relay and housekeeping (DESIGN.md, "Process roles")."""
