"""The edge: HTTP routes, the WebSocket gateway, auth, limits and problem+json errors."""
