"""The generator's table names, without a database (the schema itself: tests/integration/dev/test_schema.py)."""

from __future__ import annotations

from collections import Counter

from clinicflow_dev import generator


def test_filler_names_are_unique_realistic_and_never_core() -> None:
    core = set(generator.table_names(edge_cases=False))
    names = generator.table_names(filler_tables=1000, edge_cases=False)
    assert not [name for name, n in Counter(names).items() if n > 1]
    assert len(names) == len(core) + 1000
    filler = names[len(core) :]
    assert not core & set(filler)
    assert all(name.isidentifier() and name.islower() and len(name) <= 64 for name in filler)
