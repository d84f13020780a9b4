"""tests/host_sim/test_promotions_api.py run again with the host on PostgreSQL (see
conftest.py).

Left out: one test whose own query orders by SQLite's `rowid`."""

from tests.host_sim.test_promotions_api import *  # noqa: F403

del test_a_pump_quote_takes_the_best_rule_and_counts_a_use  # noqa: F821
