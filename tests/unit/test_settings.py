"""Settings live in one module (clinicflow/core/settings.py), are read at call time, fail with the variable's name,
and are all documented in docs/deploy.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from clinicflow.core import settings
from clinicflow.core.settings import SettingError

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("clinicflow", "flows", "tasks", "blocks")
# Reads that are not settings: secret_env holds credentials; templates.py substitutes ${VAR} a user wrote in a
# pipeline config; the MySQL client copies its own variables into a subprocess's environment.
NOT_SETTINGS = {
    "clinicflow/core/settings.py",
    "clinicflow/core/secret_env.py",
    "clinicflow/toolkit/templates.py",
    "clinicflow/connectors/mysql/client.py",
}


def _is_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _env_reads(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if (func.attr == "get" and _is_environ(func.value)) or (
                func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os"
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            lines.append(node.lineno)
    return lines


def _product_files() -> list[Path]:
    return sorted(path for top in PRODUCT for path in (ROOT / top).rglob("*.py"))


def test_no_environment_read_outside_the_settings_module() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _product_files()
        if str(path.relative_to(ROOT)) not in NOT_SETTINGS
        for line in _env_reads(ast.parse(path.read_text(), str(path)))
    ]
    assert found == [], "read these through clinicflow.core.settings"


def test_every_clinicflow_variable_read_is_declared_and_documented() -> None:
    source = (ROOT / "clinicflow/core/settings.py").read_text()
    read = set(re.findall(r'"(CLINICFLOW_[A-Z0-9_]+)"', source))
    assert read <= set(settings.VARIABLES)
    docs = (ROOT / "docs/deploy.md").read_text()
    table = docs.split("<!-- settings-table:start -->\n", 1)[1].split("\n<!-- settings-table:end -->", 1)[0]
    assert table == settings.markdown_table(), "regenerate docs/deploy.md's table from settings.markdown_table()"
    for name in settings.VARIABLES:
        assert f"`{name}`" in table


def test_settings_are_read_when_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINICFLOW_NIGHTLY_WORKERS", raising=False)
    assert settings.nightly_workers() == 4
    monkeypatch.setenv("CLINICFLOW_NIGHTLY_WORKERS", " 7 ")
    assert settings.nightly_workers() == 7
    monkeypatch.setenv("CLINICFLOW_DICOM_RANGE_DEPLOYMENT", "a/b")
    assert settings.dicom_range_deployment() == "a/b"
    monkeypatch.setenv("CLINICFLOW_TABLES_FILE", "")
    assert settings.tables_yml_file() is None


@pytest.mark.parametrize(
    ("name", "value", "read", "message"),
    [
        ("CLINICFLOW_NIGHTLY_WORKERS", "four", settings.nightly_workers, "must be a whole number, got 'four'"),
        ("CLINICFLOW_SMALL_GROUP_SIZE", "0", settings.small_group_size, "must be greater than 0"),
        ("CLINICFLOW_FANOUT_POLL_CAP_SECONDS", "soon", settings.fanout_poll_cap_seconds, "must be a number"),
        ("CLINICFLOW_CREDENTIALS", "vault", settings.credentials, "one of blocks, env"),
        ("CLINICFLOW_PROCESSING_SANDBOX", "docker", settings.processing_sandbox, "one of auto, bwrap, uid, process"),
        ("CLINICFLOW_MYSQL_EXPORT", "odbc", settings.mysql_export, "one of client, pymysql"),
        ("CLINICFLOW_LOG_LEVEL", "loud", settings.log_level, "a logging level"),
    ],
)
def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, read: object, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=name) as raised:
        read()  # type: ignore[operator]
    assert message in str(raised.value)
