"""Address and identity comparison behind the refusal of a replica or analytics block that names the source."""

from __future__ import annotations

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.opendental import guards
from clinicflow.opendental.tables.config import yaml_load


def test_loopback_spellings_are_one_address() -> None:
    a = MySQLServer(host="127.0.0.1", port=3306, database="od")
    for host in ("localhost", "LOCALHOST", "::1", "127.0.1.1"):
        assert guards.same_address(a, a.model_copy(update={"host": host}))
    assert not guards.same_address(a, a.model_copy(update={"port": 3307}))
    assert not guards.same_address(a, a.model_copy(update={"unix_socket": "/run/mysqld/mysqld.sock"}))
    assert guards.same_address(a, PostgresServer(host="localhost", port=3306))


def test_identity_prefers_the_server_uuid() -> None:
    one = guards.MySQLIdentity("uuid-1", "db1", 3306, "/var/lib/mysql/", 0)
    assert one.same_server(guards.MySQLIdentity("uuid-1", "other-name", 3307, "/x/", 0))
    assert not one.same_server(guards.MySQLIdentity("uuid-2", "db1", 3306, "/var/lib/mysql/", 0))
    maria = guards.MySQLIdentity(None, "db1", 3306, "/var/lib/mysql/", 0)
    assert maria.same_server(guards.MySQLIdentity(None, "db1", 3306, "/var/lib/mysql/", 0))
    assert not maria.same_server(guards.MySQLIdentity(None, "db1", 3307, "/var/lib/mysql2/", 0))
    assert not maria.same_database("OpenDental", "opendental")
    assert guards.MySQLIdentity(None, "db1", 3306, "/d/", 1).same_database("OpenDental", "opendental")


def test_analytics_on_the_source_address_is_refused_without_connecting() -> None:
    source = MySQLServer(host="db.clinic.invalid", port=3306, database="od")
    with pytest.raises(guards.DangerousConfigError, match="points at the source"):
        guards.check_analytics_is_not_source(source, PostgresServer(host="db.clinic.invalid", port=3306))
    guards.check_analytics_is_not_source(source, PostgresServer(host="db.clinic.invalid", port=5432))


def test_yaml_merge_keys_are_not_duplicates_but_repeated_keys_are() -> None:
    data = yaml_load("base: &b {tier: 1}\ntables:\n  patient: {<<: *b, tier: 2}\n")
    assert data["tables"]["patient"] == {"tier": 2}
    with pytest.raises(Exception, match="duplicate key 'tier'"):
        yaml_load("tables:\n  patient:\n    deep: {tier: 1, tier: 2}\n")
