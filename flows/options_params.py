"""A flow's parameters generated from its options model(s), so each option is declared once, in the model.

Prefect reads a flow's parameters with ``inspect.signature(flow.fn)``, which honours ``__signature__``:
``Flow.__init__`` builds the parameter schema with ``prefect.utilities.callables.parameter_schema``,
``prefect deploy`` loads the flow by importing its entrypoint (``load_flow_from_entrypoint``) and calls the
same function (``prefect/cli/deploy/_core.py``), as does ``flow.to_deployment``; ``Flow.validate_parameters``
and ``parameters_to_args_kwargs`` bind with it too. Only ``parameter_schema_from_entrypoint`` parses the
source instead, and nothing in Prefect's deploy path calls it. So ``@options_parameters`` under ``@flow``
gives the function a signature of its plain parameters and every field of each
:class:`~clinicflow.core.options.RunOptions` parameter (annotation and default): ``--param dataset=x``,
prefect.yaml ``parameters:`` and the UI form see the fields by name, and a call hands the body the models,
each validated whole by ``from_values`` (one error naming every bad field) before any work.

Deploy from an environment where the flow's module imports: when it does not, ``load_flow_from_entrypoint``
falls back to a placeholder parsed from the source (``safe_load_flow_from_entrypoint``), which would list
the body's own parameters (``options``) instead of the fields.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from prefect.utilities.hashing import file_hash
from pydantic.fields import FieldInfo

from clinicflow.core.options import RunOptions

R = TypeVar("R")


def source_version(path: str) -> str:
    """The version Prefect gives a flow by default (a hash of its file), for a flow whose function is generated."""
    return file_hash(path)


def _model_parameters(model: type[RunOptions], defaults: Mapping[str, Any] | None = None) -> list[inspect.Parameter]:
    """The model's fields as keyword parameters: the model's own fields first, then its bases' (fan-out last).

    ``defaults`` gives a default to fields the model requires (block names: the blocks package owns them).
    """
    defaults = defaults or {}
    parameters = []
    for name in model.parameter_names():
        field: FieldInfo = model.model_fields[name]
        if name in defaults:
            default = defaults[name]
        elif field.is_required():
            default = inspect.Parameter.empty
        else:
            default = field.get_default(call_default_factory=True)
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=field.annotation)
        )
    return parameters


def options_parameters(
    *, fixed: Mapping[str, Any] | None = None, **defaults: Any
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give the decorated function the fields of its options models as parameters (see the module docstring).

    The function's parameters annotated with a :class:`RunOptions` model are replaced by the model's fields
    (keyword parameters, after its plain parameters); ``defaults`` gives defaults to required fields;
    ``fixed`` fields are no parameter and always get the value given (a flow that never uses them).
    """
    fixed = dict(fixed or {})

    def decorate(body: Callable[..., R]) -> Callable[..., R]:
        hints = typing.get_type_hints(body)
        plain: list[inspect.Parameter] = []
        models: dict[str, type[RunOptions]] = {}
        for name, parameter in inspect.signature(body).parameters.items():
            hint = hints.get(name)
            if isinstance(hint, type) and issubclass(hint, RunOptions):
                models[name] = hint
            else:
                plain.append(parameter.replace(annotation=hints.get(name, parameter.annotation)))
        fields = {name: model.parameter_names() for name, model in models.items()}
        every = plain + [p for model in models.values() for p in _model_parameters(model, defaults)]
        names = [p.name for p in every]
        if len(set(names)) != len(names):
            raise TypeError(f"{body.__qualname__}: a parameter or option is declared twice: {names}")
        unknown = (set(defaults) | set(fixed)) - set(names)
        if unknown:
            raise TypeError(f"{body.__qualname__}: defaults for no option: {sorted(unknown)}")
        generated = [p for p in every if p.name not in fixed]
        signature = inspect.Signature(generated, return_annotation=hints.get("return", inspect.Signature.empty))

        @functools.wraps(body)
        def call(*args: Any, **kwargs: Any) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = {**bound.arguments, **fixed}
            given: dict[str, Any] = {p.name: values[p.name] for p in plain}
            for name, model in models.items():  # in the body's order: the first bad model's error wins
                given[name] = model.from_values(**{field: values[field] for field in fields[name]})
            return body(**given)

        call.__signature__ = signature  # type: ignore[attr-defined]
        call.__annotations__ = {p.name: p.annotation for p in generated}
        if "return" in hints:
            call.__annotations__["return"] = hints["return"]
        return call

    return decorate
