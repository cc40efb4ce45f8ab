"""Peers measured side by side with Athena (``python -m bench.run --peers``)."""
