"""Domain objects and errors: no I/O."""
