"""Memory of inference: peak heap allocated during a call (memray) and a process's peak RSS.

Two figures, because they answer different questions:

- :func:`peak_alloc_mb`: the high-water mark of bytes allocated *during* one call, as memray
  tracks them (malloc/calloc/realloc/posix_memalign/mmap from Python and native code, so
  torch's CPU allocator is included). What was allocated before the call (the model's
  weights, the inputs) is not counted.
- :func:`subprocess_peak_rss_mb`: the peak resident set size of a fresh process that loads
  the model and runs it. Peak RSS is per process and never goes down, so each variant is
  measured in its own subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["peak_alloc_mb", "subprocess_peak_rss_mb"]

_MB = 10**6
_STDERR_TAIL_CHARS = 4000
_ENGINE_ENV = "NAVYA_QUANTIZED_ENGINE"


def peak_alloc_mb(fn: Callable[[], Any], *, warmup: bool = True) -> float:
    """Peak bytes allocated during one call of ``fn()``, in MB (10**6 bytes), per memray.

    ``fn`` runs once untracked first when ``warmup`` (lazy initialisation, packed-weight
    caches, thread pools), then once inside a ``memray.Tracker`` writing to a temporary file
    (``native_traces=False``, ``follow_fork=False``, aggregated format) whose
    ``metadata.peak_memory`` is the result. Only allocations made while tracking count, so
    memory that already existed (weights, inputs) is excluded. The caller decides the grad
    mode and thread count (wrap ``fn`` in ``torch.inference_mode()`` for inference).

    Raises:
        RuntimeError: if a memray ``Tracker`` is already active (memray cannot nest, e.g.
            under ``pytest --memray`` or ``memray run``).
    """
    import memray

    if warmup:
        fn()
    with tempfile.TemporaryDirectory(prefix="navya-memray-") as tmp:
        path = Path(tmp) / "peak.bin"
        tracker = memray.Tracker(
            path,
            native_traces=False,
            follow_fork=False,
            file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS,
        )
        try:
            tracker.__enter__()
        except RuntimeError as exc:
            raise RuntimeError(
                "peak_alloc_mb: a memray Tracker is already active in this process (memray "
                "cannot nest: run without `memray run` / `pytest --memray`, or measure in a "
                f"subprocess): {exc}"
            ) from exc
        try:
            fn()
        finally:
            tracker.__exit__(None, None, None)
        with memray.FileReader(path) as reader:
            peak = reader.metadata.peak_memory
    return peak / _MB


def subprocess_peak_rss_mb(
    model: nn.Module,
    example_inputs: Any,
    *,
    threads: int = 1,
    runs: int = 3,
    timeout_s: float = 300,
) -> float:
    """Peak RSS, in MB (10**6 bytes), of a fresh Python process running ``model`` ``runs`` times.

    The model is pickled whole (``torch.save(model, f)``; quantized modules pickle fine) with
    the inputs into a temporary directory, and ``python -m navya.metrics._rss_worker`` loads
    both, sets ``threads`` intra-op threads (and this process's current quantized engine),
    calls ``model(*example_inputs)`` ``runs`` times under ``torch.inference_mode()`` and
    reports ``ru_maxrss``. The model is used as is (its train/eval mode is not changed).

    The figure includes the interpreter and ``import torch`` (hundreds of MB): it is
    meaningful as a comparison between variants measured the same way, not as an absolute
    footprint of the model.

    Args:
        model: a picklable module (its classes importable from the child; ``sys.path`` is
            passed on via ``PYTHONPATH``).
        example_inputs: a tuple of positional arguments (a lone tensor is wrapped), e.g.
            ``([img1, img2],)`` for the detector or ``(x,)`` for its core.

    Raises:
        ValueError: if ``threads < 1``, ``runs < 1`` or ``timeout_s <= 0``.
        RuntimeError: if the worker fails or times out (with the tail of its stderr).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be an integer >= 1, got {runs!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env[_ENGINE_ENV] = torch.backends.quantized.engine
    with tempfile.TemporaryDirectory(prefix="navya-rss-") as tmp:
        model_path = Path(tmp) / "model.pt"
        inputs_path = Path(tmp) / "inputs.pt"
        torch.save(model, model_path)
        torch.save(example_inputs, inputs_path)
        cmd = [
            sys.executable,
            "-m",
            "navya.metrics._rss_worker",
            str(model_path),
            str(inputs_path),
            str(threads),
            str(runs),
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
            )
        except subprocess.TimeoutExpired as exc:
            stderr = (
                exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
            )
            raise RuntimeError(
                f"RSS worker timed out after {timeout_s} s; stderr tail:\n"
                f"{(stderr or '')[-_STDERR_TAIL_CHARS:]}"
            ) from exc

    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"RSS worker failed (exit code {proc.returncode}); stderr tail:\n"
            f"{proc.stderr[-_STDERR_TAIL_CHARS:]}"
        )
    try:
        peak_bytes = int(json.loads(lines[-1])["peak_rss_bytes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(
            f"RSS worker printed no result on its last line ({lines[-1]!r}); stderr tail:\n"
            f"{proc.stderr[-_STDERR_TAIL_CHARS:]}"
        ) from exc
    return peak_bytes / _MB
