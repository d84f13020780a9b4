"""tests/host_sim/test_fleet.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_fleet import *  # noqa: F403
