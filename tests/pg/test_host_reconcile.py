"""tests/host_sim/test_reconcile_host.py run again with the host on PostgreSQL (see
conftest.py).

Left out: the two `fuelsim host reconcile` CLI tests, which open the host's SQLite file by path."""

from tests.host_sim.test_reconcile_host import *  # noqa: F403

del test_the_cli_reconciles_the_database_and_stores_the_run  # noqa: F821
del test_a_bad_station_file_is_a_clear_error_and_stores_nothing  # noqa: F821
