"""Concurrent uploads of the same bills on PostgreSQL book each bill once (the test of
tests/host_sim/test_durability.py; the killed-server test there is SQLite's file)."""

from tests.host_sim.test_durability import (
    test_concurrent_uploads_of_the_same_bills_book_each_once,
)

__all__ = ["test_concurrent_uploads_of_the_same_bills_book_each_once"]
