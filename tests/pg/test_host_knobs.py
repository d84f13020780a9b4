"""tests/host_sim/test_knobs.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_knobs import *  # noqa: F403
