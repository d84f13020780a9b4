"""The dev key `fuelsim host serve --dev-key` prints: made once, brought up to today's scopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_sim.access import (
    DEFAULT_SCOPES,
    ISSUING_SCOPES,
    OFFICE_SCOPES,
    AccessKeyError,
    add_access_key,
    grant_scopes,
    load_access_key,
)
from host_sim.db import Database
from host_sim.server import DEV_TERMINAL, bootstrap_dev_key


def test_the_dev_key_is_made_once_with_every_scope_a_counter_needs(tmp_path: Path) -> None:
    db = Database(tmp_path / "host.sqlite")
    printed: list[str] = []
    first = bootstrap_dev_key(db, out=printed.append)
    again = bootstrap_dev_key(db, out=printed.append)
    assert (again.ak, again.sk) == (first.ak, first.sk)
    assert first.scopes == {*DEFAULT_SCOPES["terminal"], *OFFICE_SCOPES, *ISSUING_SCOPES}
    assert sum(first.sk in line for line in printed) == 2


def test_a_dev_key_of_an_older_host_gets_todays_scopes(tmp_path: Path) -> None:
    db = Database(tmp_path / "host.sqlite")
    old = add_access_key(
        db, f"dev-{DEV_TERMINAL}", "x" * 32, "terminal", ["bills.write"], DEV_TERMINAL
    )
    key = bootstrap_dev_key(db, out=lambda _: None)
    assert key.sk == old.sk and "cards.issue" in key.scopes and "bills.write" in key.scopes
    with db.connect() as conn:
        stored = load_access_key(conn, old.ak)
    assert stored is not None and stored.scopes == key.scopes


def test_granting_checks_the_key_and_the_scopes(tmp_path: Path) -> None:
    db = Database(tmp_path / "host.sqlite")
    with pytest.raises(AccessKeyError, match="no access key"):
        grant_scopes(db, "nobody", ["bills.write"])
    add_access_key(db, "k1", "y" * 32, "app", ["accounts.read"], "ops")
    with pytest.raises(AccessKeyError, match="unknown scopes"):
        grant_scopes(db, "k1", ["root"])
    assert grant_scopes(db, "k1", ["cards.loss"]) == {"accounts.read", "cards.loss"}
