"""Test inputs and helpers shared by the unit and the integration tests (no database, no server)."""
