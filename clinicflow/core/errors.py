"""The errors every subsystem shares; each subsystem's own errors derive from :class:`ClinicflowError`."""
from __future__ import annotations


class ClinicflowError(RuntimeError):
    """Base of clinicflow's own errors: the message names the table, file, key or config field at fault."""


class SourceTableMissing(ClinicflowError):
    """A table named in tables.yml (or asked for) is not in the database it is read from."""


class TablesFailed(ClinicflowError):
    """Raised at the end of a run in which some tables failed, after every other table ran (the run ends Failed)."""
