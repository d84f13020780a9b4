"""The PostgreSQL adapter's pure parts: placeholder translation, rows, URLs."""

import pytest

from host_sim import pg


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
        ("SELECT a % 7 FROM t WHERE b = ?", "SELECT a %% 7 FROM t WHERE b = %s"),
        ("SELECT '?' , a FROM t WHERE b = ?", "SELECT '?' , a FROM t WHERE b = %s"),
        ("SELECT 'it''s ?%' FROM t WHERE b = ?", "SELECT 'it''s ?%%' FROM t WHERE b = %s"),
        ('SELECT "odd?name" FROM t WHERE b = ?', 'SELECT "odd?name" FROM t WHERE b = %s'),
    ],
)
def test_placeholders_become_pyformat_outside_quotes(sqlite: str, postgres: str) -> None:
    assert pg.to_pyformat(sqlite) == postgres


def test_rows_answer_by_position_and_by_name() -> None:
    row = pg.Row((7, "acme"), {"id": 0, "name": 1})
    assert (row[0], row["name"], row[-1]) == (7, "acme", "acme")
    assert row.keys() == ["id", "name"] and dict(zip(row.keys(), row, strict=True)) == {
        "id": 7,
        "name": "acme",
    }
    id_, name = row
    assert (id_, name) == (7, "acme")
    with pytest.raises(IndexError, match="no such column: nope"):
        row["nope"]


def test_urls_are_told_from_paths_and_passwords_hidden() -> None:
    assert pg.is_url("postgresql://u:p@h/db") and pg.is_url("postgres://h/db")
    assert not pg.is_url("host.sqlite") and not pg.is_url(":memory:")
    assert pg.redacted("postgresql://fuel:s3cret@db:5432/host") == (
        "postgresql://fuel:***@db:5432/host"
    )
    assert pg.redacted("postgresql://fuel@db/host") == "postgresql://fuel@db/host"
