"""Schema migration: Clearing, settlement and reconciliation (see host_sim.schema)."""

MIGRATION = ""
