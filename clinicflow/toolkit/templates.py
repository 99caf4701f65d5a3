"""Placeholders in tool configs: ``{name}`` is a run parameter, ``${NAME}`` an environment variable.

``{name}`` (a Python identifier) in any string field of a tool config is filled from the pipeline's
parameters when the tool is built (:func:`resolved`); ``${NAME}`` in an HTTP header's value (whole, or inside it:
``Bearer ${API_TOKEN}``) is read from the environment at run time (:func:`from_env_reference`), so API tokens
stay out of code and parameters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from clinicflow.toolkit.base import RunContext, ToolkitError

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def from_env_reference(value: str, what: str) -> str:
    """Each ``${NAME}`` in ``value`` read from the environment at run time, a whole value or inside one
    (``Bearer ${API_TOKEN}``: API tokens stay out of code and parameters)."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) not in os.environ:
            raise ToolkitError(f"{what}: environment variable {match.group(1)} is not set")
        return os.environ[match.group(1)]

    return _ENV_REFERENCE.sub(one, value)


# The one placeholder rule: ``{name}`` (a Python identifier) in any string of a tool config is the
# parameter ``name``; ``{{`` and ``}}`` are literal braces; anything else in braces (``{x:String}``,
# JSON) is left alone, and so is ``${NAME}``, an environment variable read at run time.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(template: str) -> set[str]:
    """The parameter names ``template`` refers to."""
    return {m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1)}


def fill(template: str, parameters: dict[str, Any], what: str) -> str:
    """``template`` with each ``{name}`` replaced by the parameter's value."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0)[0]
        if name not in parameters:
            raise ToolkitError(f"{what} {template!r} names parameter {name!r}, which the pipeline does not have")
        return str(parameters[name])

    return _PLACEHOLDER.sub(one, template)


def with_parameters(template: str, ctx: RunContext, what: str) -> str:
    """``template`` with ``{name}`` filled from the run's parameters (a URL or path that differs per environment)."""
    return fill(template, ctx.parameters, what)


def _walk(value: Any, on_text: Callable[[str, str], str], where: str) -> Any:
    if isinstance(value, str):
        return on_text(value, where)
    if isinstance(value, dict):
        return {k: _walk(v, on_text, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, on_text, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, BaseModel):
        update = {}
        for name in type(value).model_fields:
            current = getattr(value, name)
            new = _walk(current, on_text, f"{where}.{name}" if where else name)
            if new is not current and new != current:
                update[name] = new
        return value.model_copy(update=update) if update else value
    return value  # numbers, callables, secrets: never templates


def config_placeholders(config: Any) -> dict[str, set[str]]:
    """``{field path: parameter names}`` for every string field of a config that has placeholders."""
    found: dict[str, set[str]] = {}

    def note(text: str, where: str) -> str:
        names = placeholders(text)
        if names:
            found[where] = names
        return text

    _walk(config, note, "")
    return found


def resolved(config: Any, parameters: dict[str, Any], what: str = "") -> Any:
    """The config with every ``{param}`` filled (a tool object is returned as is)."""
    if not isinstance(config, BaseModel):
        return config
    return _walk(
        config,
        lambda text, where: fill(text, parameters, f"{what}{where}".strip(".")) if "{" in text or "}" in text else text,
        "",
    )
