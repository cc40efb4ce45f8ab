"""Fixtures of the execution tests."""
from tests.executions.seeding import seed  # noqa: F401  (the seeded executions fixture)
