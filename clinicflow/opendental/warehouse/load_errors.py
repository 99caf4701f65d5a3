"""Errors of the PostgreSQL load."""

from __future__ import annotations

from clinicflow.core.errors import ClinicflowError


class LoadError(ClinicflowError):
    """A table could not be loaded. The message names the table (and column/key when known)."""


class SchemaDriftError(LoadError):
    """The source changed a column's type incompatibly with what raw holds."""


class BooleanValueError(LoadError):
    """A boolean_columns column holds a value other than 0/1."""
