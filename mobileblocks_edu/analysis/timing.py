"""Timing on a shared machine: contenders measured in interleaved rounds, summarized robustly.

A CPU shared with other work is fast one second and slow the next. Timing contender A for a
minute and then contender B for a minute compares two different machines. Here every round runs
each contender once, in an order that rotates (and reverses every other round), so a burst of
load hits all of them alike; the medians and quartiles of the rounds are what the reports keep.
Lessons 7 (throughput) and 18 (latency) are built on :func:`time_interleaved`.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence


def time_interleaved(
    contenders: dict[str, Callable[[], float]], repeats: int, warmup: int = 1, log=None, unit: str = "s"
) -> dict[str, list[float]]:
    """What every contender returns (here: seconds per :class:`Step`), ``repeats`` times:
    ``warmup`` untimed rounds, then ``repeats`` rounds in which each contender runs once, in an
    order that rotates every round (and reverses every other), so that a burst of load on a
    shared machine hits all of them alike. ``unit`` only labels the log lines."""
    names = list(contenders)
    for _ in range(warmup):
        for n in names:
            contenders[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        if r % 2:
            order.reverse()
        for n in order:
            times[n].append(contenders[n]())
        if log:
            log(f"    round {r + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1]:.3g} {unit}" for n in names))
    return times


def time_rounds(calls: dict[str, Callable[[], None]], rounds: int, inner: int = 5, warmup: int = 2,
                log=None) -> dict[str, list[float]]:
    """Milliseconds per call: ``warmup`` untimed calls each, then ``rounds`` interleaved rounds
    (:func:`time_interleaved`) in which every contender runs ``inner``
    calls; their mean is one sample."""
    for call in calls.values():
        for _ in range(warmup):
            call()

    def sample(call: Callable[[], None]) -> Callable[[], float]:
        def mean_ms() -> float:
            t0 = time.perf_counter()
            for _ in range(inner):
                call()
            return (time.perf_counter() - t0) / inner * 1e3
        return mean_ms

    return time_interleaved({n: sample(c) for n, c in calls.items()}, rounds, warmup=0, log=log, unit="ms")


def summarize_ms(samples: Sequence[float]) -> dict:
    """Median, quartiles, min and max of ``samples`` (ms), rounded to 0.01 ms."""
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return {"median_ms": round(statistics.median(samples), 3), "q1_ms": round(q[0], 3), "q3_ms": round(q[2], 3),
            "min_ms": round(min(samples), 3), "max_ms": round(max(samples), 3),
            "samples_ms": [round(s, 3) for s in samples]}


__all__ = ["time_interleaved", "time_rounds", "summarize_ms"]
