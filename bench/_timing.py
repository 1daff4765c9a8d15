"""Alternating timing shared by the benchmark scripts: every round runs each contender once, so drift in machine
speed (other load, thermal) hits all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from edgehmr.host_probe import SETTLE_S


def time_alternating(rows: list[dict], warmup: int, runs: int) -> None:
    """``rows[i]["runner"].run(entry, rows[i]["feed"])`` timed (the runner's default entry unless the row names
    one); sets ``p50_ms`` and ``p90_ms`` on each row. Each call waits ``SETTLE_S`` first, so the previous
    contender's spinning worker threads have stopped (see ``edgehmr.host_probe.SETTLE_S``)."""
    samples: list[list[float]] = [[] for _ in rows]
    for i in range(warmup + runs):
        for k, row in enumerate(rows):
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            row["runner"].run(row.get("entry") or row["runner"].default_entry, row["feed"])
            if i >= warmup:
                samples[k].append((time.perf_counter() - start) * 1e3)
    for row, s in zip(rows, samples):
        s.sort()
        row["p50_ms"] = statistics.median(s)
        row["p90_ms"] = s[min(len(s) - 1, int(0.9 * len(s)))]


def time_it(fn: Callable[[], object], warmup: int, runs: int) -> tuple[float, float]:
    """(median, p90) milliseconds of ``fn`` alone, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1e3, samples[min(len(samples) - 1, int(0.9 * len(samples)))] * 1e3
