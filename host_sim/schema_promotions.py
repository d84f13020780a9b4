"""Schema migration: Promotions and test knobs (see host_sim.schema)."""

MIGRATION = ""
