"""The configuration reference, generated from the pydantic config models (``clinicflow pipelines schema``).

docs/pipelines.md holds this text between markers, and a test checks that it is
current, so the models are the one place a field is described.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from clinicflow.toolkit import configs
from clinicflow.toolkit.clickhouse import ClickHouseConnection
from clinicflow.toolkit.http import CursorPagination, LinkPagination, NoPagination, OffsetPagination, PagePagination

BEGIN = "<!-- BEGIN generated: clinicflow pipelines schema -->"
END = "<!-- END generated: clinicflow pipelines schema -->"

# (role, model): every config a pipeline can write, in the order the reference lists them.
SECTIONS: list[tuple[str, type[BaseModel]]] = [
    *(
        ("extract", m)
        for m in (
            configs.HttpExtractorConfig,
            configs.FileExtractorConfig,
            configs.SqlExtractorConfig,
            configs.ClickHouseExtractorConfig,
        )
    ),
    *(("transform", m) for m in (configs.TypeConversionConfig, configs.ColumnsConfig, configs.LambdaConfig)),
    *(
        ("load", m)
        for m in (
            configs.PostgresLoaderConfig,
            configs.ClickHouseLoaderConfig,
            configs.FileLoaderConfig,
            configs.ConsoleLoaderConfig,
        )
    ),
    ("dead_letters", configs.DeadLetterConfig),
    ("bucket", configs.BucketRef),
    ("connection", ClickHouseConnection),
    *(("pagination", m) for m in (PagePagination, OffsetPagination, CursorPagination, LinkPagination, NoPagination)),
]


def _type_text(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(dict.fromkeys(_type_text(a) for a in args if a is not type(None)))
    if origin is dict:
        return f"map of {_type_text(args[1])}"
    if origin is list:
        return f"list of {_type_text(args[0])}"
    if annotation is SecretStr:
        return "secret string"
    if (origin is not None and getattr(origin, "__name__", "") == "Callable") or annotation is Callable:
        return "function"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return annotation.__name__
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "timedelta": "duration"}.get(
            annotation.__name__, annotation.__name__
        )
    text = str(annotation)
    return "import path or function" if "ImportString" in text else text.replace("typing.", "")


def takes_parameters(annotation: Any) -> bool:
    """Whether a field holds text the ``{param}`` rule fills (a string, or strings in a map or list)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Literal:
        return False
    if annotation is str:
        return True
    if origin is typing.Annotated:
        return takes_parameters(args[0])
    if origin in (typing.Union, types.UnionType, list):
        return any(takes_parameters(a) for a in args)
    if origin is dict:
        return takes_parameters(args[1]) or args[1] is Any
    return False


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return type(value).__name__
    return f"`{value!r}`" if value not in (None, "") else ("`None`" if value is None else '`""`')


def _kind_of(model: type[BaseModel]) -> str:
    for key in ("kind", "style"):
        if key in model.model_fields:
            values = get_args(model.model_fields[key].annotation)
            if len(values) == 1:
                return str(values[0])
    return model.__name__


def reference(kind: str | None = None) -> str:
    """The reference as Markdown: every config (or those whose kind is ``kind``), one table each."""
    parts: list[str] = []
    for role, model in SECTIONS:
        name = _kind_of(model)
        if kind is not None and kind not in (name, f"{role}.{name}", model.__name__):
            continue
        doc = (model.__doc__ or "").strip().splitlines()
        parts.append(f"### {role} `{name}` ({model.__name__})\n")
        if doc and not doc[0].startswith(("Create a new model", "A base class")):
            parts.append(doc[0] + "\n")
        parts.append("| field | type | default | `{param}` | description |\n|---|---|---|---|---|")
        for field_name, field in model.model_fields.items():
            shown = field.alias or field_name
            described = (field.description or "").replace("|", "\\|")
            parts.append(
                f"| `{shown}` | {_type_text(field.annotation)} | {_default_text(field)} | "
                f"{'yes' if takes_parameters(field.annotation) else ''} | "
                f"{described} |"
            )
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def kinds() -> list[str]:
    return [f"{role}.{_kind_of(model)}" for role, model in SECTIONS]
