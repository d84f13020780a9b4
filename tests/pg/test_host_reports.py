"""tests/host_sim/test_reports.py run again with the host on PostgreSQL (see conftest.py).

Left out: the `fuelsim host report` CLI test, which opens the host's SQLite file by path."""

from tests.host_sim.test_reports import *  # noqa: F403

del test_the_cli_writes_csv_and_xlsx  # noqa: F821
