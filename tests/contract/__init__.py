"""Contract tests: the documented example requests replayed against the live server (issue 12)."""
import pytest

# Plain helper modules: let pytest explain their failed asserts too.
pytest.register_assert_rewrite("tests.contract.checks", "tests.contract.shapes", "tests.contract.curl",
                               "tests.contract.documented")
