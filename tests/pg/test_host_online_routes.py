"""tests/host_sim/test_online_routes.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_online_routes import *  # noqa: F403
