"""Schemathesis against a live server: every check, every phase (stateful included). ``make fuzz``."""
