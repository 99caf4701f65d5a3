"""Change data capture: row events of the source's binlog applied to the replica and ``raw`` (docs/cdc.md)."""
