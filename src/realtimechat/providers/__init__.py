"""Adapters for the external providers notifications go out through (push, e-mail)."""
