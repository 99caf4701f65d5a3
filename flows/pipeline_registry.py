"""The pipeline registry is Prefect's deployments: sync discovered pipelines to them, prune, backfill.

``sync`` creates or updates one deployment per pipeline (flow
``toolkit-pipeline``, deployment name = pipeline name, entrypoint
``flows/pipeline.py:run_pipeline``) on the configured work pool, tagged
:data:`MANAGED_TAG`. With ``prune`` it deletes the deployments carrying that
tag whose pipeline is no longer in code; deployments without the tag are
never touched. Every schedule is converted to Prefect's schedule types (and
so validated) and the work pool is checked before anything is written.

Where the code is, the pool's type decides (docs/pipelines.md, "Where synced
deployments run"): on a ``process`` pool the worker runs on this machine, so
the deployment's pull step enters this checkout and its job variables point
``CLINICFLOW_PIPELINES_DIR`` at the pipelines folder's absolute path; on any
other pool (``kubernetes``, ``docker``...) the code is the image's ``/app`` and
the folder is ``/app/pipelines`` unless ``image_folder`` says otherwise.
"""

from __future__ import annotations

import copy
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from clinicflow.core import settings
from clinicflow.core.errors import one_line
from clinicflow.toolkit.base import ToolkitError
from clinicflow.toolkit.spec import CronSchedule, PipelineSpec
from flows.pipeline import PIPELINE_FLOW_NAME, run_pipeline

MANAGED_TAG = "clinicflow-pipeline"
ENTRYPOINT = "flows/pipeline.py:run_pipeline"
DEFAULT_WORK_POOL = "clinicflow-k8s"
IMAGE_ROOT = "/app"
IMAGE_PIPELINES_DIR = "/app/pipelines"
CHECKOUT_ROOT = Path(__file__).resolve().parents[1]  # holds flows/, so the entrypoint resolves from it


def work_pool_name(explicit: str | None = None) -> str:
    """The work pool: the argument, else ``CLINICFLOW_WORK_POOL``, else clinicflow-k8s (read at call time)."""
    return explicit or settings.work_pool() or DEFAULT_WORK_POOL


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)


def prefect_schedules(spec: PipelineSpec) -> list[Any]:
    """The spec's schedules as Prefect ``DeploymentScheduleCreate``s; a bad one raises naming the pipeline."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule as PrefectCron
    from prefect.client.schemas.schedules import IntervalSchedule as PrefectInterval

    out = []
    for i, schedule in enumerate(spec.schedules):
        try:
            if isinstance(schedule, CronSchedule):
                prefect_schedule: Any = PrefectCron(cron=schedule.cron, timezone=schedule.timezone)
            else:
                prefect_schedule = PrefectInterval(
                    interval=schedule.interval,
                    timezone=schedule.timezone,
                    **({"anchor_date": schedule.anchor} if schedule.anchor else {}),
                )
        except ValueError as exc:
            raise ToolkitError(
                f"pipeline {spec.name}: schedule {i + 1} is invalid: {one_line(exc, with_type=False)}"
            ) from None
        out.append(DeploymentScheduleCreate(schedule=prefect_schedule, active=schedule.active))
    return out


@dataclass(frozen=True)
class CodeLocation:
    """How a worker of one pool type finds the code: the pull steps, the job variables, the ``folder`` parameter."""

    pull_steps: list[dict[str, Any]]
    job_variables: dict[str, Any]
    folder: str | None


def code_location(pool_type: str, folder: str | None, image_folder: str | None = None) -> CodeLocation:
    """A ``process`` pool runs this checkout and this folder; any other pool runs the image's /app."""
    if pool_type == "process":
        from clinicflow.toolkit.discovery import pipelines_folder

        root = str(CHECKOUT_ROOT)
        pipelines = str(pipelines_folder(folder).resolve())
        return CodeLocation(
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": root}}],
            job_variables={"working_dir": root, "env": {"CLINICFLOW_PIPELINES_DIR": pipelines}},
            folder=pipelines,
        )
    in_image = image_folder or IMAGE_PIPELINES_DIR
    job_variables = image_job_variables()
    job_variables["env"] = {**job_variables.get("env", {}), "CLINICFLOW_PIPELINES_DIR": in_image}
    return CodeLocation(
        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": IMAGE_ROOT}}],
        job_variables=job_variables,
        folder=None,
    )


IMAGE_TEMPLATE = "{{ image.stdout }}"


def image_job_variables(prefect_yaml: Path | None = None) -> dict[str, Any]:
    """A pipeline deployment's job variables on an image-based pool: prefect.yaml's ``pipeline_job_variables``
    (image, resources, deadline, env, the Secrets), the image from ``CLINICFLOW_IMAGE`` as ``prefect deploy``
    takes it. Only the pipelines folder was set, so a synced deployment ran Prefect's own image, without /app,
    the Secrets or ``CLINICFLOW_CREDENTIALS``."""
    import yaml

    path = prefect_yaml or CHECKOUT_ROOT / "prefect.yaml"
    try:
        definitions = yaml.safe_load(path.read_text(encoding="utf-8")).get("definitions") or {}
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise ToolkitError(
            f"{path}: cannot read its definitions.pipeline_job_variables ({type(exc).__name__})"
        ) from None
    template = definitions.get("pipeline_job_variables")
    if not isinstance(template, dict):
        raise ToolkitError(f"{path}: no definitions.pipeline_job_variables for pipeline deployments on this pool")
    variables = copy.deepcopy(template)
    if variables.get("image") == IMAGE_TEMPLATE:
        image = settings.image()
        if not image:
            raise ToolkitError(
                "set CLINICFLOW_IMAGE to the image the pool runs (the tag `prefect deploy` used), e.g. "
                "registry.example.com/clinicflow:0.1.0"
            )
        variables["image"] = image
    return variables


def deployment_parameters(spec: PipelineSpec, folder: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"pipeline": spec.name, "parameters": dict(spec.parameters)}
    if folder is not None:
        params["folder"] = folder
    return params


async def sync_pipelines(
    specs: dict[str, PipelineSpec],
    *,
    work_pool: str | None = None,
    prune: bool = False,
    folder: str | None = None,
    image_folder: str | None = None,
) -> SyncReport:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.callables import parameter_schema

    pool = work_pool_name(work_pool)
    schedules = {name: prefect_schedules(spec) for name, spec in specs.items()}  # all validated before any write
    report = SyncReport()
    async with get_client() as client:
        try:
            pool_type = (await client.read_work_pool(pool)).type
        except ObjectNotFound:
            raise ToolkitError(
                f"work pool {pool!r} does not exist on the Prefect API; create it or set CLINICFLOW_WORK_POOL"
            ) from None
        where = code_location(pool_type, folder, image_folder)
        flow_id = await client.create_flow_from_name(PIPELINE_FLOW_NAME)
        # Prune looks at this pool only: another pool's pipelines (another folder, another team) are not ours.
        managed = await client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[MANAGED_TAG])),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        )
        managed_by_name = {d.name: d for d in managed if d.flow_id == flow_id}
        existing_names = {d.name for d in await client.read_deployments() if d.flow_id == flow_id}
        schema = parameter_schema(run_pipeline).model_dump_for_openapi()
        for name, spec in sorted(specs.items()):
            await client.create_deployment(
                flow_id=flow_id,
                name=name,
                description=spec.description or None,
                parameters=deployment_parameters(spec, where.folder),
                tags=[MANAGED_TAG, *spec.tags],
                schedules=schedules[name],
                work_pool_name=pool,
                entrypoint=ENTRYPOINT,
                pull_steps=where.pull_steps,
                job_variables=where.job_variables,
                path=None,
                parameter_openapi_schema=schema,
                enforce_parameter_schema=True,
                concurrency_limit=1,
            )
            (report.updated if name in existing_names else report.created).append(name)
        if prune:
            for name, deployment in sorted(managed_by_name.items()):
                if name not in specs:
                    await client.delete_deployment(deployment.id)
                    report.pruned.append(name)
    return report


async def backfill(spec: PipelineSpec, start: datetime, end: datetime) -> list[UUID]:
    """One flow run of the pipeline's deployment per time-scope window in ``[start, end)``."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    if spec.timescope is None:
        raise ToolkitError(
            f"pipeline {spec.name} has no timescope, so it has no windows to backfill: give its spec "
            "timescope=Timescope(window=...) (its runs then take start/end), or run it once with "
            f"`clinicflow pipelines run {spec.name}`"
        )
    try:
        windows = spec.timescope.windows(start, end)
    except ValueError as exc:
        raise ToolkitError(f"pipeline {spec.name}: {exc}") from None
    async with get_client() as client:
        try:
            deployment = await client.read_deployment_by_name(f"{PIPELINE_FLOW_NAME}/{spec.name}")
        except ObjectNotFound:
            raise ToolkitError(
                f"pipeline {spec.name} has no deployment: run `clinicflow pipelines sync` first"
            ) from None
        ids = []
        for window_start, window_end in windows:
            run = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={**deployment.parameters, "start": window_start, "end": window_end},
                tags=["backfill"],
            )
            ids.append(run.id)
    return ids


# --- the registry API: thin synchronous functions over discovery and deployments -------------------


@dataclass(frozen=True)
class RegisteredPipeline:
    """A discovered pipeline and, when asked for, its deployment on the Prefect API."""

    name: str
    spec: PipelineSpec
    origin: str
    timescope_window: Any  # a timedelta, or None for a pipeline without a time scope
    deployment_id: UUID | None = None


def get_pipeline(name: str, folder: str | None = None) -> PipelineSpec:
    """The discovered pipeline ``name``; ToolkitError naming the known ones (and discovery errors) if none."""
    from clinicflow.toolkit.discovery import discover

    return discover(folder).get(name)


def list_pipelines(
    folder: str | None = None, *, deployed: bool = False, timescoped: bool | None = None
) -> list[RegisteredPipeline]:
    """Discovered pipelines by name; ``timescoped`` keeps only those with (True) or without (False) a time scope;
    ``deployed`` adds each one's managed deployment id from the Prefect API (None: not deployed)."""
    from clinicflow.toolkit.discovery import discover

    found = discover(folder)
    ids = _run(_managed_deployment_ids()) if deployed else {}
    out = []
    for name, spec in sorted(found.pipelines.items()):
        if timescoped is not None and (spec.timescope is not None) != timescoped:
            continue
        out.append(
            RegisteredPipeline(
                name, spec, found.origins[name], spec.timescope.window if spec.timescope else None, ids.get(name)
            )
        )
    return out


def register_pipeline(
    pipeline: PipelineSpec | str,
    *,
    folder: str | None = None,
    work_pool: str | None = None,
    image_folder: str | None = None,
) -> UUID:
    """Create or update the deployment of one discovered pipeline (its schedules and time scope); its id.

    The deployment runs what discovery finds under ``folder``, so the pipeline must be there.
    """
    name = pipeline if isinstance(pipeline, str) else pipeline.name
    spec = get_pipeline(name, folder)
    if not isinstance(pipeline, str) and pipeline.model_dump(exclude={"steps"}) != spec.model_dump(exclude={"steps"}):
        raise ToolkitError(
            f"register_pipeline: {name!r} differs from the module discovery finds in "
            f"{folder or 'the pipelines folder'}; a deployment runs the discovered one"
        )
    _run(sync_pipelines({name: spec}, work_pool=work_pool, folder=folder, image_folder=image_folder))
    deployment_id = _run(_managed_deployment_ids()).get(name)
    if deployment_id is None:
        raise ToolkitError(f"register_pipeline: deployment of {name!r} not found after sync")
    return deployment_id


def unregister_pipeline(name: str) -> bool:
    """Delete the managed deployment of ``name`` (its schedules and time-scope runs stop); False if there was none.

    The module itself stays: a later sync registers it again.
    """

    async def go() -> bool:
        from prefect import get_client

        deployment_id = (await _managed_deployment_ids()).get(name)
        if deployment_id is None:
            return False
        async with get_client() as client:
            await client.delete_deployment(deployment_id)
        return True

    return _run(go())


async def _managed_deployment_ids() -> dict[str, UUID]:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    async with get_client() as client:
        flows = await client.read_flows()
        flow_ids = {f.id for f in flows if f.name == PIPELINE_FLOW_NAME}
        managed = await client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[MANAGED_TAG]))
        )
    return {d.name: d.id for d in managed if d.flow_id in flow_ids}


_T = TypeVar("_T")


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    import asyncio

    return asyncio.run(coroutine)
