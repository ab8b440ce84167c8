"""Same-run speed ratios timed in a fresh, pinned worker process; the yardstick; injected slowdowns.

Why a fresh process: the suite's own process has trained, calibrated and evaluated for minutes
before it times anything (a large, fragmented heap; thread pools; caches), and the speed of a
model depends on that history (:mod:`navya.runtime`). A worker started for the job (``python
-m navya.metrics._speed_worker``) loads the pickled models, pins its timing thread to one core
(:func:`navya.runtime.pinned`), and times each candidate interleaved with the reference
(:func:`~navya.metrics.latency.compare_latency`: warm-up, then ABBA pairs). The same worker
serves the suite, the recording of per-machine speed baselines and the gate's power study, so
the spread a baseline records is the spread of the figure the gate compares.

The **yardstick** is a fixed workload that no navya code touches (a small convolution stack
with fixed weights, plain ``torch.nn.functional``), timed interleaved with the reference. Every
speedup cancels a slowdown that hits the reference and the candidate alike (pre-processing,
decoding and NMS, a dependency); the ratio ``t(reference) / t(yardstick)`` does not, so the
gate guards it per machine like a speedup.

:func:`inject_slowdown` makes a model's network or its post-processing a given fraction
slower (a busy wait proportional to the call's own duration), for the gate's tests and power
study.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from navya.metrics.latency import SpeedupResult, speedup_from_samples

__all__ = [
    "YARDSTICK",
    "SpeedRun",
    "inject_slowdown",
    "run_speed_job",
    "yardstick",
]

#: The name of the yardstick's entry in a :class:`SpeedRun` and in speed baselines.
YARDSTICK = "yardstick"
_STDERR_TAIL_CHARS = 4000


def yardstick(size: int = 320) -> Any:
    """A fixed workload of plain torch ops: 3x3 and 1x1 convolutions, depthwise convolutions
    and activations over a ``1x3xSxS`` input with weights from a fixed seed (about the cost of
    a third of the fp32 detector at 320 px on one thread). Returns a callable."""
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(1, 3, size, size, generator=g)
    layers = [(torch.randn(16, 3, 3, 3, generator=g) * 0.2, 2, 1)]
    for cin, cout in ((16, 32), (32, 64), (64, 64)):
        layers.append((torch.randn(cin, 1, 3, 3, generator=g) * 0.2, 1, cin))  # depthwise
        layers.append((torch.randn(cout, cin, 1, 1, generator=g) * 0.2, 1, 1))  # pointwise

    def run() -> torch.Tensor:
        y = x
        for w, stride, groups in layers:
            y = F.relu6(F.conv2d(y, w, stride=stride, padding=w.shape[-1] // 2, groups=groups))
        return y.mean()

    return run


class _Slower:
    """Calls ``fn`` and then busy-waits ``fraction`` of the time the call took."""

    def __init__(self, fn, fraction: float):
        self.fn, self.fraction = fn, float(fraction)

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        end = t0 + (time.perf_counter() - t0) * (1.0 + self.fraction)
        while time.perf_counter() < end:
            pass
        return out


class _Clocked:
    """Records when the wrapped end-to-end call started (for a post-processing slowdown)."""

    def __init__(self, fn):
        self.fn, self.start = fn, 0.0

    def __call__(self, *args, **kwargs):
        self.start = time.perf_counter()
        return self.fn(*args, **kwargs)


class _SlowerTail:
    """Calls ``fn`` (post-processing, the end of the call), then busy-waits ``fraction`` of
    the time since the end-to-end call started."""

    def __init__(self, fn, clock: _Clocked, fraction: float):
        self.fn, self.clock, self.fraction = fn, clock, float(fraction)

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        now = time.perf_counter()
        end = now + (now - self.clock.start) * self.fraction
        while time.perf_counter() < end:
            pass
        return out


def inject_slowdown(model: nn.Module, where: str, fraction: float) -> nn.Module:
    """Make ``model`` (an :class:`~navya.models.SSDLite`, changed in place and returned)
    slower by ``fraction``:

    - ``"network"``: each call of ``model.core`` takes ``fraction`` longer;
    - ``"postprocess"``: each end-to-end call takes ``fraction`` longer, the extra time spent
      at the end of post-processing (decoding and NMS, shared by every variant). Post-
      processing alone is about 1 % of an fp32 call, so the slowdown is sized on the call.
    """
    if not fraction:
        return model
    if fraction < 0:
        raise ValueError(f"a slowdown fraction must be >= 0, got {fraction!r}")
    if where == "network":
        model.core.forward = _Slower(model.core.forward, fraction)
    elif where == "postprocess":
        clock = _Clocked(model.forward)
        model.forward = clock
        model.postprocess = _SlowerTail(model.postprocess, clock, fraction)
    else:
        raise ValueError(f"slowdowns go into 'network' or 'postprocess', not {where!r}")
    return model


@dataclass(frozen=True)
class SpeedRun:
    """One worker's results: each candidate's speedup over the reference (and the
    yardstick's, ``t(yardstick) / t(reference)``... stored as ``t(reference)/t(yardstick)``
    under :data:`YARDSTICK`), and where the timing thread ran."""

    results: dict[str, SpeedupResult]
    placement: dict[str, Any] = field(default_factory=dict)
    rounds: int = 0
    #: pairs the worker could not time, with why (a stored build that no longer loads)
    errors: dict[str, str] = field(default_factory=dict)


def run_speed_job(reference: nn.Module, candidates: Mapping[str, nn.Module],
                  images: Sequence[torch.Tensor], *, rounds: int = 60, warmup: int = 5,
                  threads: int = 1, cpu: int | None = None, with_yardstick: bool = False,
                  inject: Mapping[str, Any] | None = None,
                  builds: Mapping[str, str | os.PathLike] | None = None,
                  pipeline: bool = False, reference_name: str = "reference",
                  timeout_s: float = 900.0) -> SpeedRun:
    """Time each candidate against ``reference`` in one fresh worker process.

    Args:
        reference, candidates: detectors called as ``model(images)``; pickled whole.
        rounds, warmup: timed ABBA pairs and untimed calls per comparison.
        threads: intra-op threads of the timing.
        cpu: the core to pin the timing thread to (:func:`navya.runtime.timing_cpu`), or
            None to leave placement to the OS.
        with_yardstick: also time the yardstick against the reference.
        inject: slowdowns for tests and the power study: ``{"network": {name: fraction},
            "postprocess": fraction}`` (post-processing: every model, the reference too).
        builds: stored builds (pickled whole by :func:`torch.save`) to time a model against:
            ``{name: path}`` with ``name`` a candidate or ``reference_name``; the result
            ``<name>@build`` is ``t(stored build) / t(model now)`` (below 1: slower now).
        pipeline: also time the reference's network alone against its end-to-end call:
            ``<reference_name>@pipeline`` is ``t(network) / t(end to end)``.

    Raises:
        ValueError: bad arguments. RuntimeError: the worker failed or timed out (with the
        tail of its stderr).
    """
    for label, value, low in (("rounds", rounds, 3), ("warmup", warmup, 0),
                              ("threads", threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if YARDSTICK in candidates:
        raise ValueError(f"{YARDSTICK!r} is reserved for the yardstick")
    unknown = set(builds or {}) - set(candidates) - {reference_name}
    if unknown:
        raise ValueError(f"stored builds given for {sorted(unknown)}, which are neither the "
                         f"reference {reference_name!r} nor a candidate")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    with tempfile.TemporaryDirectory(prefix="navya-speed-") as tmp:
        tmp = Path(tmp)
        paths = {}
        for i, (name, model) in enumerate({"__reference__": reference, **candidates}.items()):
            paths[name] = str(tmp / f"model{i}.pt")
            torch.save(model, paths[name])
        torch.save(list(images), tmp / "images.pt")
        job = {"reference": paths.pop("__reference__"), "candidates": paths,
               "images": str(tmp / "images.pt"), "rounds": rounds, "warmup": warmup,
               "threads": threads, "cpu": cpu, "yardstick": with_yardstick,
               "engine": torch.backends.quantized.engine, "inject": dict(inject or {}),
               "reference_name": reference_name, "pipeline": bool(pipeline),
               "builds": {name: str(path) for name, path in (builds or {}).items()}}
        (tmp / "job.json").write_text(json.dumps(job))
        cmd = [sys.executable, "-m", "navya.metrics._speed_worker", str(tmp / "job.json")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"speed worker timed out after {timeout_s} s") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"speed worker failed (exit {proc.returncode}); stderr tail:\n"
                           f"{proc.stderr[-_STDERR_TAIL_CHARS:]}")
    out = json.loads(lines[-1])
    results = {name: speedup_from_samples(r["t_ref_ms"], r["t_ms"], threads=threads)
               for name, r in out["results"].items()}
    return SpeedRun(results, out["placement"], rounds, dict(out.get("errors", {})))
