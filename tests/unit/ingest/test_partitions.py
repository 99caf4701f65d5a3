"""The ingest prefix planner without a bucket: groups, partitions, every key once, listing per group."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clinicflow.connectors.objectstore.patterns import Location
from clinicflow.connectors.objectstore.stores import ObjectInfo
from clinicflow.ingest.partitions import (
    objects_in_groups,
    partition_name,
    plan_prefix_partitions,
    prefix_group,
)

KEYS = (
    [f"in/2023/{m:02d}/a{i}.txt" for m in range(1, 4) for i in range(3)]
    + [f"in/2024/b{i}.txt" for i in range(7)]
    + ["in/top.txt", "in/top.txt.bak", "in/2025/x.txt"]
)


class ListedKeys:
    """An object store over a fixed list of keys (listing only: what the planner and children use)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = sorted(keys)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return iter([ObjectInfo(f"mem://{k}", k, 1, "v") for k in self.keys if k.startswith(prefix)])

    def read(self, key: str, max_bytes: int) -> bytes:
        raise NotImplementedError


def test_groups_are_first_folders_or_files_under_the_prefix() -> None:
    assert prefix_group("in/2023/01/a.txt", "in/") == "in/2023/"
    assert prefix_group("in/top.txt", "in/") == "in/top.txt"
    assert prefix_group("in/2023/x", "in/20") == "in/2023/"
    with pytest.raises(ValueError, match="not under the listing prefix"):
        prefix_group("out/a.txt", "in/")


@pytest.mark.parametrize("partitions", [1, 2, 3, 5, 50])
def test_every_key_in_exactly_one_partition(partitions: int) -> None:
    planned = plan_prefix_partitions(iter(KEYS), "in/", partitions)
    assert 1 <= len(planned) <= partitions
    assert all(planned)
    store, location = ListedKeys(KEYS), Location("file", "/data", "in/**")
    found = [info.key for groups in planned for info in objects_in_groups(store, location, groups)]
    assert sorted(found) == sorted(KEYS)  # each key once, none lost (top.txt.bak not taken twice by top.txt)
    flat = [g for groups in planned for g in groups]
    assert flat == sorted(flat)
    assert len(set(flat)) == len(flat)


def test_partitions_are_balanced_by_object_count() -> None:
    planned = plan_prefix_partitions(iter(KEYS), "in/", 2)
    sizes = [sum(1 for k in KEYS if prefix_group(k, "in/") in groups) for groups in planned]
    assert planned[0] == ["in/2023/"]
    assert sizes == [9, 10]


def test_empty_listing_and_one_file() -> None:
    assert plan_prefix_partitions(iter([]), "in/", 4) == []
    assert plan_prefix_partitions(iter(["in/a.txt"]), "in/", 4) == [["in/a.txt"]]
    with pytest.raises(ValueError, match="partitions must be at least 1"):
        plan_prefix_partitions(iter(KEYS), "in/", 0)


def test_children_keep_only_keys_matching_the_glob() -> None:
    store, location = ListedKeys(KEYS), Location("file", "/data", "in/**/*.txt")
    assert [i.key for i in objects_in_groups(store, location, ["in/top.txt"])] == ["in/top.txt"]


def test_names_follow_the_groups() -> None:
    assert partition_name(0, ["a/"]).startswith("prefixes-001-")
    assert partition_name(0, ["a/"]) != partition_name(0, ["b/"])
