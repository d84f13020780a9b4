"""tests/host_sim/test_vfc_validate.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_vfc_validate import *  # noqa: F403
