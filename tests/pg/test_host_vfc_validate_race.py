"""tests/host_sim/test_vfc_validate_race.py run again with the host on PostgreSQL (see
conftest.py)."""

from tests.host_sim.test_vfc_validate_race import *  # noqa: F403
