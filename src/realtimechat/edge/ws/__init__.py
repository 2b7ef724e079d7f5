"""The WebSocket session, one job per module.

handshake.py: the first frame (auth), the `ready` frame and the session's start;
dispatch.py: the receive loop and its table from frame type to handler (commands run
through edge/commands.py); handlers.py: the frames that are not commands (auth, resume,
ping, typing); resume.py: where each channel starts again, decided without I/O;
context.py: the narrow dependencies they share. edge/gateway.py serves and drains.
"""
