"""The Python client SDK.

The REST client, the live session (reconnect, resume, backfill, dedupe) and the cursor stores.
"""
