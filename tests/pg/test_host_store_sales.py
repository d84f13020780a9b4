"""tests/host_sim/test_store_sales.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_store_sales import *  # noqa: F403
