"""tests/host_sim/test_bills.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_bills import *  # noqa: F403
