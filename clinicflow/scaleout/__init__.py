"""Scale-out: runs fanned out as child deployment runs (nightly tables, DICOM key ranges, ingest prefixes).

Plain logic; the Prefect side is flows/fanout_runner.py and the parent flows.
"""
