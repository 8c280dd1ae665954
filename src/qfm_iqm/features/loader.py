"""The input pipeline of extraction and scoring: images decoded and cropped in worker processes, a bounded number
of batches ahead of the backbone, with the time the backbone waits for them measured.

Crop positions depend only on an image and its id, so the result is the same whatever the number of workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


class _Prepared(Dataset):
    """Item ``i``: ``(prepare(items[i]), "")``, or ``(None, error)`` when preparing it failed."""

    def __init__(self, prepare: Callable[[Any], Any], items: Sequence[Any]) -> None:
        self.prepare, self.items = prepare, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, str]:
        try:
            return self.prepare(self.items[i]), ""
        except Exception as err:  # noqa: BLE001 - reported per item; the caller decides whether it is fatal
            return None, str(err) or type(err).__name__


def default_workers(device: str) -> int:
    """Decoding processes: one beside a CPU forward (they share the cores), up to 8 feeding an accelerator."""
    return 1 if torch.device(device).type == "cpu" else min(8, os.cpu_count() or 1)


class DataWait:
    """The share of a loop's time spent waiting for the next batch: ``wait_s`` / ``total_s``."""

    def __init__(self) -> None:
        self.wait_s, self.started = 0.0, time.perf_counter()

    @property
    def total_s(self) -> float:
        return time.perf_counter() - self.started

    @property
    def fraction(self) -> float:
        return self.wait_s / max(self.total_s, 1e-9)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Count the block's time as waiting."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.wait_s += time.perf_counter() - t0

    def timed(self, batches: Iterator) -> Iterator:
        """``batches``, adding the time each took to arrive to ``wait_s``."""
        while True:
            with self.waiting():
                batch = next(batches, None)
            if batch is None:
                return
            yield batch


def prepared_batches(prepare: Callable[[Any], Any], items: Sequence[Any], batch: int, workers: int = 1,
                     pin_memory: bool = False, clock: DataWait | None = None) -> Iterator[list[tuple[Any, str]]]:
    """Lists of ``(prepared, error)`` for ``batch`` items at a time, in order, prepared by ``workers``
    processes (0: in this process) two batches ahead; ``clock`` measures the waiting."""
    loader = DataLoader(_Prepared(prepare, items), batch_size=batch, num_workers=workers, collate_fn=list,
                        prefetch_factor=2 if workers else None, pin_memory=pin_memory)
    batches = iter(loader)
    yield from (clock.timed(batches) if clock else batches)
