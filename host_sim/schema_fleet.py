"""Schema migration: Fleet accounts and virtual cards (see host_sim.schema)."""

MIGRATION = ""
