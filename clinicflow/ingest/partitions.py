"""Ingest fan-out: a wildcard pattern's listing split into prefix partitions (no Prefect here).

A key matching the pattern belongs to one **group**: its first path segment after the
pattern's literal prefix (``referrals/2024/`` for ``referrals/2024/a/b.txt`` under
``referrals/``), or the key itself for an object directly under the prefix. Groups are
disjoint, so a partition (a run of consecutive groups, in key order) holds every
matching object of its groups and no other: each object is ingested by exactly one
child, which lists only its groups' prefixes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator

from clinicflow.connectors.objectstore.patterns import Location, glob_match
from clinicflow.connectors.objectstore.stores import ObjectInfo, ObjectStore
from clinicflow.core.dbapi import PgConnection
from clinicflow.core.sql import quote_ident
from clinicflow.ingest.pipeline import RunCounts


def prefix_group(key: str, base: str) -> str:
    """The group of ``key`` under listing prefix ``base``: the first folder after it (with '/'), else the key."""
    if not key.startswith(base):
        raise ValueError(f"ingest fan-out: key {key!r} is not under the listing prefix {base!r}")
    head, sep, _ = key[len(base) :].partition("/")
    return base + head + sep


def plan_prefix_partitions(keys: Iterable[str], base: str, partitions: int) -> list[list[str]]:
    """At most ``partitions`` lists of consecutive groups, balanced by object count (memory: one count per group)."""
    if partitions < 1:
        raise ValueError(f"ingest fan-out: partitions must be at least 1, got {partitions}")
    counts = Counter(prefix_group(k, base) for k in keys)
    groups = sorted(counts)
    total = sum(counts.values())
    planned: list[list[str]] = []
    done = 0
    for group in groups:
        # A group goes to the next partition when most of it lies past the current partitions' share.
        if not planned or (len(planned) < partitions and done + counts[group] / 2 > total * len(planned) / partitions):
            planned.append([])
        planned[-1].append(group)
        done += counts[group]
    return planned


def partition_name(index: int, groups: list[str]) -> str:
    """A stable name that changes when the groups change (a rerun never keeps a child of other groups)."""
    digest = hashlib.sha256("\x1f".join(groups).encode("utf-8")).hexdigest()[:8]
    return f"prefixes-{index + 1:03d}-{digest}"


def objects_in_groups(store: ObjectStore, location: Location, groups: list[str]) -> Iterator[ObjectInfo]:
    """The objects matching ``location`` whose group is one of ``groups`` (streamed, one group at a time)."""
    for group in groups:
        for info in store.list(group):
            # A file group's prefix also lists longer names (a.txt lists a.txt.bak): keep the group's own.
            if prefix_group(info.key, location.prefix) == group and glob_match(location.glob, info.key):
                yield info


def recorded_ingest_counts(conn: PgConnection, schema: str, run_id: str, listed: int) -> RunCounts:
    """What the children of ``run_id`` recorded: documents staged, Medical rows, open dead letters by stage/reason."""
    s = quote_ident(schema, "postgres")
    counts = RunCounts(listed=listed)
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {s}.documents WHERE run_id = %s", (run_id,))
        counts.staged = int(cur.fetchone()[0])
        cur.execute(f"SELECT count(*) FROM {s}.medical WHERE run_id = %s", (run_id,))
        counts.extracted = int(cur.fetchone()[0])
        cur.execute(
            f"SELECT stage, reason, count(*) FROM {s}.dead_letters WHERE run_id = %s AND status = 'open' GROUP BY 1, 2",
            (run_id,),
        )
        counts.dead_lettered.update({f"{stage}/{reason}": int(n) for stage, reason, n in cur})
    conn.rollback()
    return counts
