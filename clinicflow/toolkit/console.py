"""Console loader: a rich table of the first rows and a live row count."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from clinicflow.toolkit.base import Batch, RunContext


class ConsoleLoader:
    """Show up to ``max_rows`` rows as a table (``format='table'``) or as lines (``'lines'``), count the rest."""

    def __init__(
        self,
        *,
        max_rows: int = 20,
        title: str | None = None,
        format: str = "table",
        progress: bool = True,
        console: Console | None = None,
    ) -> None:
        self.max_rows, self.title, self.format, self.progress = max_rows, title, format, progress
        self.console = console or Console()

    def load(self, batches: Iterable[Batch], ctx: RunContext) -> int:
        shown: list[tuple[Any, ...]] = []
        columns: tuple[str, ...] = ()
        written = 0
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            console=self.console,
            disable=not self.progress,
            transient=True,
        ) as progress:
            task = progress.add_task("0 rows", total=None)
            for batch in batches:
                columns = columns or batch.columns
                if len(shown) < self.max_rows:
                    shown.extend(batch.rows[: self.max_rows - len(shown)])
                written += len(batch)
                progress.update(task, description=f"{written} rows")
        if self.format == "lines":
            for row in shown:
                self.console.print(dict(zip(columns, row, strict=False)))
        else:
            table = Table(*columns, title=self.title or ctx.pipeline)
            for row in shown:
                table.add_row(*("" if v is None else str(v) for v in row))
            self.console.print(table)
        self.console.print(f"{written} rows" + (f" ({written - len(shown)} not shown)" if written > len(shown) else ""))
        return written
