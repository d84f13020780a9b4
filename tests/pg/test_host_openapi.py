"""tests/host_sim/test_openapi.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_openapi import *  # noqa: F403
