"""The synthetic source kind and the dead-letter drill: fail 10 %, replay at 0 %, every record exactly once."""

from __future__ import annotations

import pytest

from clinicflow.connectors.objectstore.patterns import PatternError, parse_location
from clinicflow.ingest.synthetic import generate, parse_synthetic


def test_generation_is_seeded_and_validated() -> None:
    a = [r.model_dump() for r in generate("events", 20, seed=1)]
    assert a == [r.model_dump() for r in generate("events", 20, seed=1)]
    assert a != [r.model_dump() for r in generate("events", 20, seed=2)]
    assert {r.kind for r in generate("logs", 5, 0)} == {"logs"}
    assert parse_synthetic(parse_location("synthetic://blob?count=12&seed=3")) == ("blob", 12, 3)
    with pytest.raises(PatternError, match="kind"):
        parse_synthetic(parse_location("synthetic://tweets?count=1"))
