"""tests/host_sim/test_cards.py run again with the host on PostgreSQL (see conftest.py)."""

from tests.host_sim.test_cards import *  # noqa: F403
