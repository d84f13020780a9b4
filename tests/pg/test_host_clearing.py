"""tests/host_sim/test_clearing.py run again with the host on PostgreSQL (see conftest.py).

Left out: the `fuelsim host clear` CLI test, which opens the host's SQLite file by path."""

from tests.host_sim.test_clearing import *  # noqa: F403

del test_the_cli_clears_and_settles  # noqa: F821
