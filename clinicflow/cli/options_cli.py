"""A command's options generated from a flow's options model: the fields' names, defaults and help, declared once.

``@model_options(DicomRunOptions, ...)`` under ``@app.command(...)`` gives the command one ``--option`` per
field of the models (help: the field's description; a ``Literal`` as text, so the command's own check words
the error; a ``False`` boolean as a flag) and calls it with the values by field name. Prefect-free, so the
CLI starts without importing the flows (the flows' parameters come from the same models:
``flows/options_params.py``).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import typer
from pydantic.fields import FieldInfo

from clinicflow.core.options import RunOptions


def _cli_type(annotation: Any) -> Any:
    """A ``Literal`` as text (the command's check words the error); ``tuple[X, ...]`` as a repeatable option."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return str
    if typing.get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis:
        item: Any = args[0]
        return list[item] | None
    if len(args) == 1 and args[0] is not annotation:  # X | None
        inner = _cli_type(args[0])
        return inner if inner != args[0] else annotation
    return annotation


def _option(name: str, field: FieldInfo, default: Any, help_text: str | None) -> inspect.Parameter:
    annotation = _cli_type(field.annotation)
    if typing.get_origin(field.annotation) is typing.Literal:
        help_text = help_text or " | ".join(typing.get_args(field.annotation))
    flag = "--" + name.replace("_", "-")
    declarations = [flag] if annotation is bool and default is False else []
    option = typer.Option(default, *declarations, help=help_text)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def _check_fields(models: tuple[type[RunOptions], ...], values: Mapping[str, Any], names: Mapping[str, str]) -> None:
    """The options' values checked by their models before any flow starts: a bad one is a usage error naming the
    option (exit 2), not the flow's parameter validation dump (exit 1, read as "the run failed")."""
    from pydantic import ValidationError

    for model in models:
        given = {name: values[name] for name in model.parameter_names() if name in values}
        try:
            model.model_validate(given)
        except ValidationError as exc:
            bad = [e for e in exc.errors() if e["type"] != "missing" and e["loc"] and e["loc"][0] in given]
            if bad:

                def option(error: Any) -> str:
                    return "--" + str(names.get(str(error["loc"][0]), error["loc"][0])).replace("_", "-")

                first = str(bad[0]["msg"]).removeprefix("Value error, ")
                others = [f"{option(e)}: {str(e['msg']).removeprefix('Value error, ')}" for e in bad[1:]]
                raise typer.BadParameter("; ".join([first, *others]), param_hint=option(bad[0])) from None


def model_options(
    *models: type[RunOptions],
    defaults: Mapping[str, Any] | None = None,
    exclude: frozenset[str] = frozenset(),
    names: Mapping[str, str] | None = None,
    help: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """One option per field of each model but ``exclude``, after the command's own parameters.

    ``defaults``: for fields the model requires; ``names``: an option's name when not the field's
    (``allowed_roots`` → ``--allowed-root``); ``help``: when the command words a field differently.
    """
    defaults, names, help = defaults or {}, names or {}, help or {}

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        hints = typing.get_type_hints(command, include_extras=True)  # Typer's Annotated[..., Argument()] intact
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(command).parameters.values()
            if p.kind is not p.VAR_KEYWORD
        ]
        field_info = {name: model.model_fields[name] for model in models for name in model.parameter_names()}
        fields = [name for name in field_info if name not in exclude]
        options = []
        for name in fields:
            field = field_info[name]
            default = defaults[name] if name in defaults else field.get_default(call_default_factory=True)
            options.append(_option(names.get(name, name), field, default, help.get(name, field.description)))
        field_of = {names.get(name, name): name for name in fields}

        @functools.wraps(command)
        def call(**values: Any) -> None:
            by_field = {field_of.get(key, key): value for key, value in values.items()}
            _check_fields(models, by_field, names)
            command(**by_field)

        call.__signature__ = inspect.Signature(own + options)  # type: ignore[attr-defined]
        return call

    return decorate
