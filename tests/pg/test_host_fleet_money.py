"""tests/host_sim/test_fleet_money.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_fleet_money import *  # noqa: F403
