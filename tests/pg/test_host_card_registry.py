"""tests/host_sim/test_card_registry.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_card_registry import *  # noqa: F403
