"""Start-up objects are frozen out of the cyclic collector; what comes later is still collected."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from clinicflow.core.heap import freeze_start_up_objects

class Node:
    pass

kept = [Node() for _ in range(1000)]
before = gc.get_freeze_count()
freeze_start_up_objects()
frozen = gc.get_freeze_count()
later = Node()
later.me = later  # a cycle made after the freeze
del later
print(before, frozen, gc.collect())
"""


def test_start_up_objects_are_frozen_and_later_cycles_still_collected() -> None:
    shown = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    before, frozen, collected = (int(x) for x in shown.stdout.split())
    assert before == 0
    assert frozen >= 1000
    assert collected >= 1
