"""Find pipelines: ``*_pipeline.py`` modules under a folder, and the ``clinicflow.pipelines`` entry point group.

Each module exposes ``pipeline`` (a :class:`PipelineSpec`) or ``pipelines``
(a list of them). A module that fails to import, or exposes nothing valid, is
reported by name and never hides the others; two pipelines with one name are
an error (neither is kept, so nothing deploys the wrong one).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinicflow.core import settings
from clinicflow.core.errors import one_line
from clinicflow.toolkit.base import ToolkitError
from clinicflow.toolkit.spec import PipelineSpec

ENTRY_POINT_GROUP = "clinicflow.pipelines"
DEFAULT_FOLDER = "pipelines"


def pipelines_folder(folder: str | Path | None = None) -> Path:
    """The folder to scan: the argument, else ``CLINICFLOW_PIPELINES_DIR``, else ./pipelines (read at call time)."""
    return Path(folder) if folder is not None else settings.pipelines_dir() or Path(DEFAULT_FOLDER)


@dataclass(frozen=True)
class DiscoveryError:
    origin: str
    message: str


@dataclass
class Discovery:
    pipelines: dict[str, PipelineSpec] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    errors: list[DiscoveryError] = field(default_factory=list)

    def get(self, name: str) -> PipelineSpec:
        if name in self.pipelines:
            return self.pipelines[name]
        related = [e for e in self.errors if name in e.message or name in e.origin]
        hint = f"; discovery errors: {'; '.join(f'{e.origin}: {e.message}' for e in related)}" if related else ""
        known = ", ".join(sorted(self.pipelines)) or "none"
        raise ToolkitError(f"no pipeline named {name!r} (known: {known}){hint}")


def _error_summary(exc: BaseException, path: Path | None = None) -> str:
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if path is not None:  # the line in the pipeline module itself; never one of the library's own
        frames = [f for f in frames if Path(f.filename) == path]
    where = f" (line {frames[-1].lineno} of {Path(frames[-1].filename).name})" if frames else ""
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":
        details = "; ".join(_validation_detail(e) for e in exc.errors()[:3])  # type: ignore[attr-defined]
        return f"invalid pipeline spec: {details}{where}"
    return f"{one_line(exc)}{where}"


def _validation_detail(error: dict[str, Any]) -> str:
    """One pydantic error as ``where: what`` (a config built by a helper has no location: ``config``)."""
    where = ".".join(str(p) for p in error["loc"]) or "config"
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


def _specs_of(obj: Any, origin: str) -> list[PipelineSpec]:
    if isinstance(obj, PipelineSpec):
        return [obj]
    single = getattr(obj, "pipeline", None)
    many = getattr(obj, "pipelines", None)
    found = ([single] if single is not None else []) + list(many or [])
    if not found:
        raise ToolkitError("exposes no `pipeline` (a PipelineSpec) or `pipelines` list")
    bad = [type(s).__name__ for s in found if not isinstance(s, PipelineSpec)]
    if bad:
        raise ToolkitError(f"`pipeline`/`pipelines` hold {bad}, not PipelineSpec")
    return found


def _import_file(path: Path) -> Any:
    # A stable module name per file, so two folders' modules never collide in sys.modules.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"clinicflow_pipelines_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ToolkitError("cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def discover(folder: str | Path | None = None, *, entry_points: bool = True) -> Discovery:
    result = Discovery()
    candidates: list[tuple[str, Path | None, Any]] = []
    root = pipelines_folder(folder)
    if root.is_dir():
        for path in sorted(root.rglob("*_pipeline.py")):
            candidates.append((str(path), path, lambda p=path: _import_file(p)))
    elif folder is not None:
        result.errors.append(DiscoveryError(str(root), "pipelines folder does not exist"))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            candidates.append((f"entry point {ep.name} ({ep.value})", None, ep.load))
    seen: dict[str, list[str]] = {}
    for origin, module_path, load in candidates:
        try:
            specs = _specs_of(load(), origin)
        except BaseException as exc:  # noqa: BLE001 - sys.exit() or KeyboardInterrupt at import is a broken module too
            result.errors.append(DiscoveryError(origin, _error_summary(exc, module_path)))
            continue
        for spec in specs:
            seen.setdefault(spec.name, []).append(origin)
            result.pipelines[spec.name] = spec
            result.origins[spec.name] = origin
    for name, origins in seen.items():
        if len(origins) > 1:
            result.pipelines.pop(name)
            result.origins.pop(name)
            result.errors.append(DiscoveryError(", ".join(origins), f"duplicate pipeline name {name!r}"))
    return result
