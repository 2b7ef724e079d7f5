"""The WebSocket wire protocol shared by the server and the client: close codes and limits."""

from __future__ import annotations

# Close codes beyond the standard ones (RFC 6455 1012 "service restart", 1013 "try again later").
CLOSE_INTERNAL_ERROR = 1011
CLOSE_GOING_AWAY = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_BAD_FRAME = 4400

# Fields the server echoes in its answers (ids, the frame's type) are JSON scalars, and
# strings of at most this many characters: an answer is never bigger than it has to be.
MAX_ECHO_CHARS = 128
