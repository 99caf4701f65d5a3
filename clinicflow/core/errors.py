"""The errors every subsystem shares; each subsystem's own errors derive from :class:`ClinicflowError`."""

from __future__ import annotations


class ClinicflowError(RuntimeError):
    """Base of clinicflow's own errors: the message names the table, file, key or config field at fault."""


class SourceTableMissing(ClinicflowError):
    """A table named in tables.yml (or asked for) is not in the database it is read from."""


class TablesFailed(ClinicflowError):
    """Raised at the end of a run in which some tables failed, after every other table ran (the run ends Failed)."""


def one_line(exc: BaseException, *, limit: int | None = 300, with_type: bool = True) -> str:
    """An exception as one short line for a run summary or a failure row (its type's name if it has no message).

    Only the first line of the message (of a PostgreSQL error's ``pgerror`` when it has one): drivers put details
    (a failing row's values, a query) on later lines, and those may hold patient data. ``limit=None`` keeps the
    whole first line, for a caller that still edits it (a value cut in half could no longer be withheld).
    """
    lines = str(getattr(exc, "pgerror", None) or exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    name = type(exc).__name__
    if with_type:
        text = f"{name}: {text}" if text and not text.startswith(name) else (text or name)
    text = text or name  # an exception without a message is named by its type
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
