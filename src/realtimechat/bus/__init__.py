"""Fan-out adapters: the bus carries committed events from writers to every node."""
