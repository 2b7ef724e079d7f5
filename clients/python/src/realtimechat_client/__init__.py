"""The RealTimeChat Python client."""
