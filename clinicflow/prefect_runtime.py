"""How clinicflow runs Prefect when no Prefect API is configured.

Local runs, the demo, the benches and the CronJob fallback run their flows on
Prefect's embedded server: a throw-away server started by this process and
gone with it. Four Prefect defaults cost time there and buy nothing:

* the server registers every installed block type at start (~3 s on a
  2-core pod); credentials come from the environment in this mode, and a
  block that is saved registers its own type anyway;
* with registration off, the server's memoizing wrapper around it still imports
  every installed Prefect collection (prefect-gcp, prefect-aws,
  prefect-kubernetes) to hash the block registry, and only then calls the
  registration that returns at once: 2-5 s of the server's start here;
* the server sends telemetry: pods have no internet, so it only logs an error;
* each flow run starts a heartbeat thread that sleeps in 1-second steps and is
  joined when the run ends, so every flow call waits up to 1 s after its work
  is done. Heartbeats let a server mark crashed runs; an embedded server dies
  with the process, so nobody could read them.

With ``PREFECT_API_URL`` set (deployments, a local Prefect server) nothing here
changes Prefect's behaviour.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# Read by Prefect when it is first imported: set them before that.
EMBEDDED_ENV_DEFAULTS = {
    # The embedded server needs more than Prefect's default 20 s on a busy 2-core pod.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def prepare_embedded_environment() -> None:
    """Set the embedded-server defaults above unless a Prefect API is configured or the user set them."""
    if os.environ.get("PREFECT_API_URL"):
        return
    for name, value in EMBEDDED_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def flow_run_settings() -> Iterator[None]:
    """Wrap a flow call: with no Prefect API, flow-run heartbeats are off (see the module's docstring)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
