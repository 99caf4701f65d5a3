"""The long-running service processes' start-up objects kept out of the cyclic garbage collector.

The API, the dispatcher and the task workers import Prefect, FastAPI and pydantic: hundreds of thousands
of objects that live as long as the process. A full (generation 2) collection scans all of them, and in
the middle of a burst of requests that scan held an API process for 0.3-0.5 s while it found nothing to
free (bench/results/processing-history.md). :func:`freeze_start_up_objects` moves what exists once the
process is ready into the permanent generation (``gc.freeze``), so later collections scan only the
objects the requests themselves create.
"""

from __future__ import annotations

import gc


def freeze_start_up_objects() -> None:
    """Collect once, then exempt every object alive now from future collections (call when ready)."""
    gc.collect()
    gc.freeze()
