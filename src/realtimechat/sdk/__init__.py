"""Client SDK helpers for consuming the chat event stream."""
