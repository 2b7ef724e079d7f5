"""Where uploaded files' bytes live: local disk (embedded) or S3-compatible storage."""
