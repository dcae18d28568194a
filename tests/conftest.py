"""Test fixtures live in tests/fixtures/fix_*.py (pytest plugins), as in psycopg 3."""

pytest_plugins = [
    "tests.fixtures.fix_pg",
    "tests.fixtures.fix_mqtt",
    "tests.fixtures.fix_proxy",
    "tests.fixtures.fix_pglite",
]
