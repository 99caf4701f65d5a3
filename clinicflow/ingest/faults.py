"""Seeded fault injection for drills (``fail_percentage``): the same items fail for the same seed."""

from __future__ import annotations

import hashlib

DLQ_MARK = "[DLQ]"


def injected_fault(seed: int, item_key: str, fail_percentage: float) -> bool:
    """True for about ``fail_percentage`` % of item keys, chosen by a hash of (seed, key)."""
    if fail_percentage <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{item_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 1_000_000 < fail_percentage * 10_000
