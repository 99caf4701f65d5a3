"""Scale-out: the generic part of fanning a run out as child deployment runs (keys, reruns, polling, verdicts).

Plain logic below the subsystems, which plan their own partitions: the nightly's tables
(:mod:`clinicflow.opendental.fanout`), DICOM key ranges (:mod:`clinicflow.dicom.partitions`), ingest
prefix groups (:mod:`clinicflow.ingest.partitions`). The Prefect side is flows/fanout_runner.py and the
parent flows.
"""
