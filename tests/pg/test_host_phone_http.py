"""tests/host_sim/test_phone_http.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_phone_http import *  # noqa: F403
