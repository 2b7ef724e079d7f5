"""Use cases: plain async classes over the database runner and the bus; no HTTP here."""
