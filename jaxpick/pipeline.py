"""Streaming many micrographs through a device function with bounded host memory.

The pattern every batch command uses (preprocess today; extract and denoise later):

1. **plan** — read only headers, skip inputs whose outputs are complete, and group the rest by
   shape so each distinct shape compiles once;
2. **prefetch** — reader threads load the next micrographs while the device works, at most a
   fixed number of micrographs ahead (so host memory stays bounded over 10⁴ files);
3. **batch** — same-shaped micrographs are stacked into fixed-size batches; the last one is
   padded (with a mask) so no batch triggers a recompile;
4. **write** — writer threads save results under temporary names and rename them when complete;
5. **report** — a progress bar with throughput and ETA, failures collected per file (an unreadable
   micrograph is reported by name and skipped, the others go on), and a summary at the end.

No JAX here: the device function is passed in, so this module is testable on its own.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxpick.errors import JaxpickError
from jaxpick.io.image import read_image, read_image_header
from jaxpick.io.names import image_name


@dataclass(frozen=True)
class Item:
    """One input micrograph: where it is, what it is called, its shape and pixel size."""

    path: Path
    name: str
    shape: tuple[int, ...]
    pixel_size: float | None


@dataclass
class Report:
    """What a batch run did, for the summary line and the exit code."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self, verb: str) -> str:
        rate = len(self.done) / self.seconds if self.seconds > 0 else 0.0
        line = (
            f"{verb} {len(self.done)} micrograph(s) in {self.seconds:.1f} s ({rate:.2f}/s); "
            f"{len(self.skipped)} already done, {len(self.failed)} failed"
        )
        if self.failed:
            shown = list(self.failed.items())[:20]
            line += "\n" + "\n".join(f"  FAILED {name}: {why}" for name, why in shown)
            if len(self.failed) > len(shown):
                line += f"\n  ... and {len(self.failed) - len(shown)} more"
        return line


def plan(
    paths: Iterable[str | os.PathLike[str]],
    outputs: Callable[[str], Sequence[Path]],
    *,
    overwrite: bool,
    report: Report,
) -> dict[tuple[int, ...], list[Item]]:
    """Reads headers, skips finished inputs and groups the rest by shape.

    Args:
      paths: input micrographs.
      outputs: the output files of an input, given its image name; an input is finished when
        all of them exist (outputs are renamed into place only when complete). An input with
        no output files (results kept in memory) is never finished.
      overwrite: process finished inputs again.
      report: collects skipped inputs and header failures.

    Returns:
      ``{shape: items}`` in input order within each shape.

    Raises:
      JaxpickError: two inputs share an image name (their outputs would overwrite each other).
    """
    groups: dict[tuple[int, ...], list[Item]] = collections.defaultdict(list)
    seen: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        name = image_name(path)
        if name in seen:
            raise JaxpickError(
                f"{path} and {seen[name]} have the same image name {name!r}; "
                "their outputs would overwrite each other"
            )
        seen[name] = path
        done = outputs(name)
        if not overwrite and done and all(p.exists() for p in done):
            report.skipped.append(name)
            continue
        try:
            header = read_image_header(path)
        except JaxpickError as err:
            report.failed[name] = str(err)
            continue
        if len(header.shape) != 2:
            report.failed[name] = f"{path}: expected one 2-D micrograph, got shape {header.shape}"
            continue
        groups[header.shape].append(Item(path, name, header.shape, header.pixel_size))
    return dict(groups)


@dataclass(frozen=True)
class Batch:
    """Same-shaped micrographs stacked for the device; padded slots have ``valid`` False."""

    items: tuple[Item, ...]
    data: np.ndarray  # (batch_size, H, W) float32
    valid: np.ndarray  # (batch_size,) bool


def _read(item: Item) -> np.ndarray:
    data = read_image(item.path).data
    if data.shape != item.shape:
        raise JaxpickError(f"{item.path}: shape {data.shape} differs from its header {item.shape}")
    return data


def batches(
    items: Sequence[Item],
    batch_size: int,
    *,
    readers: ThreadPoolExecutor,
    report: Report,
    lookahead: int = 2,
    read: Callable[[Item], np.ndarray] = _read,
) -> Iterator[Batch]:
    """Yields fixed-size batches of same-shaped micrographs, reading ahead in threads.

    At most ``lookahead`` batches' worth of reads are in flight or waiting, which bounds host
    memory. A micrograph that fails to read is recorded in ``report`` and left out; the batch is
    filled from the following ones. The last batch is padded with zeros.
    """
    if not items:
        return
    shape = items[0].shape
    pending: collections.deque[tuple[Item, Future[np.ndarray]]] = collections.deque()
    queue = iter(items)

    def top_up() -> None:
        while len(pending) < batch_size * lookahead:
            item = next(queue, None)
            if item is None:
                return
            pending.append((item, readers.submit(read, item)))

    top_up()
    while pending:
        chosen: list[Item] = []
        arrays: list[np.ndarray] = []
        while pending and len(chosen) < batch_size:
            item, future = pending.popleft()
            try:
                arrays.append(future.result())
                chosen.append(item)
            except JaxpickError as err:
                report.failed[item.name] = str(err)
            top_up()
        if not chosen:
            continue
        # One copy at most (a 4096² micrograph is 64 MiB): a full batch of one is a view.
        if len(arrays) == batch_size == 1 and arrays[0].dtype == np.float32:
            data = arrays[0][None]
        else:
            data = np.zeros((batch_size, *shape), dtype=np.float32)
            for i, array in enumerate(arrays):
                data[i] = array
        valid = np.arange(batch_size) < len(chosen)
        yield Batch(tuple(chosen), data, valid)


class Writers:
    """A thread pool for output writing that never holds more than ``limit`` pending jobs."""

    def __init__(self, threads: int = 2, limit: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="jaxpick-write")
        self._pending: collections.deque[tuple[str, Future[Any], Callable[[], None]]] = (
            collections.deque()
        )
        self._limit = limit

    def submit(
        self, name: str, job: Callable[[], None], on_done: Callable[[], None], report: Report
    ) -> None:
        """Runs ``job`` in a writer thread; ``on_done`` runs (in this thread) once it succeeded."""
        self._pending.append((name, self._pool.submit(job), on_done))
        while len(self._pending) > self._limit:
            self._finish_one(report)

    def _finish_one(self, report: Report) -> None:
        name, future, on_done = self._pending.popleft()
        try:
            future.result()
        except JaxpickError as err:
            report.failed[name] = str(err)
        except OSError as err:
            report.failed[name] = f"cannot write outputs: {err}"
        else:
            on_done()

    def drain(self, report: Report) -> None:
        while self._pending:
            self._finish_one(report)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
