"""Operations: the post-deploy smoke test, and backup and restore of the embedded mode."""
