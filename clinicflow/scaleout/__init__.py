"""Scale-out: the nightly fanned out as child deployment runs.

Plain logic; the Prefect side is flows/nightly_fanout.py.
"""
