"""Alternating timing shared by the benchmark scripts: every round runs each contender once, so drift in machine
speed (other load, thermal) hits all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from edgehmr.host_probe import time_in_alternation


def time_alternating(rows: list[dict], warmup: int, runs: int) -> None:
    """``rows[i]["runner"].run(entry, rows[i]["feed"])`` timed (the runner's default entry unless the row names
    one) with :func:`edgehmr.host_probe.time_in_alternation` (a pause before each call, so the previous
    contender's spinning worker threads have stopped); sets ``p50_ms`` and ``p90_ms`` on each row."""
    calls = [lambda row=row: row["runner"].run(row.get("entry") or row["runner"].default_entry, row["feed"])
             for row in rows]
    for row, s in zip(rows, time_in_alternation(calls, warmup, runs)):
        s = sorted(t * 1e3 for t in s)
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
