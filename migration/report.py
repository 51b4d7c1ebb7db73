"""Progress while copying, and the final summary table (rich)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable


class Reporter:
    def __init__(self, quiet: bool = False, console: Console | None = None, out: Console | None = None):
        self.quiet = quiet
        self.err = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.out = out or Console(file=sys.stdout, highlight=False, soft_wrap=True)
        self.phases: list[tuple[str, float]] = []
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}

    def info(self, message: str) -> None:
        if not self.quiet:
            self.err.print(message, markup=False)

    @contextmanager
    def phase(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases.append((name, time.perf_counter() - started))

    # --- per-table progress -------------------------------------------------------------------
    def copy_begin(self, total_rows: int) -> None:
        if self.quiet or not self.err.is_terminal:
            return
        self._progress = Progress(
            TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.err, transient=False,
        )
        self._progress.start()
        self._tasks["__total__"] = self._progress.add_task("all tables", total=total_rows)

    def table_start(self, name: str, rows: int) -> None:
        if self._progress is not None:
            self._tasks[name] = self._progress.add_task(name, total=rows)

    def table_restart(self, name: str) -> None:
        if self._progress is not None:
            self._progress.reset(self._tasks[name])

    def table_advance(self, name: str, rows: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._tasks[name], rows)
            self._progress.advance(self._tasks["__total__"], rows)

    def table_done(self, name: str, rows: int, seconds: float) -> None:
        if self._progress is None and not self.quiet:
            rate = rows / seconds if seconds > 0 else 0
            self.err.print(f"  copied {name:<32} {rows:>10,} rows  {seconds:7.2f} s  {rate:>10,.0f} rows/s",
                           markup=False)

    def copy_end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # --- summary --------------------------------------------------------------------------------
    def summary(self, result) -> None:
        table = RichTable(title=f"MLflow migration {'(dry run) ' if result.dry_run else ''}summary",
                          title_justify="left")
        table.add_column("table")
        table.add_column("rows", justify="right")
        if result.dry_run:
            table.add_column("in target now", justify="right")
            for t in result.tables:
                table.add_row(t.name, f"{t.source_rows:,}", f"{result.existing_counts.get(t.name, 0):,}")
        else:
            table.add_column("seconds", justify="right")
            table.add_column("rows/s", justify="right")
            table.add_column("verified", justify="center")
            for t in result.tables:
                rate = t.copied_rows / t.seconds if t.seconds > 0 else 0
                table.add_row(t.name, f"{t.copied_rows:,}", f"{t.seconds:.2f}", f"{rate:,.0f}",
                              "ok" if result.verified.get(t.name) else "-")
            rows = sum(t.copied_rows for t in result.tables)
            secs = sum(t.seconds for t in result.tables)
            table.add_section()
            table.add_row("all tables (copy)", f"{rows:,}", f"{secs:.2f}", f"{rows / secs if secs else 0:,.0f}", "")
        self.out.print(table)
        phases = RichTable(title="phases", title_justify="left")
        phases.add_column("phase")
        phases.add_column("seconds", justify="right")
        for name, secs in result.phases:
            phases.add_row(name, f"{secs:.2f}")
        phases.add_section()
        phases.add_row("total (wall)", f"{result.seconds:.2f}")
        self.out.print(phases)
        for line in result.notes:
            self.out.print(line, markup=False)
