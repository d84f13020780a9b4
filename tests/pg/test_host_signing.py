"""tests/host_sim/test_signing.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_signing import *  # noqa: F403
