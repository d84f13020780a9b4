"""Schema migration: online loads, unlocks and maintenance requests (see host_sim.schema)."""

MIGRATION = ""
