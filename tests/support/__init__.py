"""Helpers shared by the unit and integration tests (plain modules, no fixtures of their own but the ones they export)."""
