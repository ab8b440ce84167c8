"""Child process of :func:`navya.metrics.memory.subprocess_peak_rss_mb`.

Usage: ``python -m navya.metrics._rss_worker MODEL_PATH INPUTS_PATH THREADS RUNS``

Loads a whole pickled module and a tuple of positional inputs, runs ``model(*inputs)``
``RUNS`` times under ``torch.inference_mode()`` with ``THREADS`` intra-op threads, and prints
``{"peak_rss_bytes": N}`` as JSON on its last stdout line. If ``NAVYA_QUANTIZED_ENGINE`` is
set, that quantized engine is used (the parent passes its own). Nothing runs on import.
"""

from __future__ import annotations

import json
import os
import resource
import sys


def _peak_rss_bytes() -> int:
    """This process's own peak RSS: ``VmHWM`` of ``/proc/self/status`` where there is one.

    Not ``ru_maxrss`` on Linux: a child forked from a large process starts with its parent's
    high-water mark and keeps it across ``exec``, so every variant measured from the suite
    (6.5 GB resident) reported the suite's 6,474 MB. ``VmHWM`` belongs to the address space
    that ``exec`` created.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model_path, inputs_path, threads, runs = args[0], args[1], int(args[2]), int(args[3])

    import torch

    from navya.runtime import repair_unpickled  # imports only torch, already loaded

    torch.set_num_threads(threads)
    engine = os.environ.get("NAVYA_QUANTIZED_ENGINE")
    if engine:
        torch.backends.quantized.engine = engine
    # weights_only=False: both files are our own temporary files, written by the parent
    # process a moment ago (a whole pickled module cannot be loaded with weights_only=True).
    model = torch.load(model_path, weights_only=False)
    inputs = torch.load(inputs_path, weights_only=False)
    repair_unpickled(model)  # whole pickled INT8 modules lack nn.Module internals
    with torch.inference_mode():
        for _ in range(runs):
            model(*inputs)
    print(json.dumps({"peak_rss_bytes": _peak_rss_bytes()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
