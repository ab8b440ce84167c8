"""Worker of :func:`navya.metrics.speed.run_speed_job`: times pickled models in a fresh process.

Usage: ``python -m navya.metrics._speed_worker JOB.json``. Loads the reference and each
candidate (whole pickled modules written by the parent a moment ago), pins the timing thread,
and times each candidate against the reference with
:func:`navya.metrics.latency.compare_latency`; prints one JSON line ``{"results": {name:
{"t_ref_ms": [...], "t_ms": [...]}}, "placement": {...}}``. Nothing runs on import.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        job = json.load(f)

    import torch

    from navya.metrics.latency import time_interleaved
    from navya.metrics.speed import YARDSTICK, inject_slowdown, yardstick
    from navya.runtime import pinned, repair_unpickled, steady_allocator

    steady_allocator()
    torch.backends.quantized.engine = job["engine"]
    threads, inject = job["threads"], job["inject"]
    images = torch.load(job["images"], weights_only=False)

    def load(path: str, name: str | None):
        # weights_only=False: our own temporary files, written by the parent process
        model = repair_unpickled(torch.load(path, weights_only=False)).eval()
        if name is not None and name in inject.get("network", {}):
            inject_slowdown(model, "network", inject["network"][name])
        if inject.get("postprocess"):
            inject_slowdown(model, "postprocess", inject["postprocess"])
        return model

    results = {}
    with pinned(job["cpu"]) as placement:
        ref = load(job["reference"], None)
        candidates = [(name, load(path, name)) for name, path in job["candidates"].items()]
        if job["yardstick"]:
            candidates.append((YARDSTICK, None))
        for name, model in candidates:
            fn = yardstick() if model is None else (lambda m=model: m(images))
            t_ref, t = time_interleaved(lambda: ref(images), fn, threads=threads,
                                        rounds=job["rounds"], warmup=job["warmup"])
            results[name] = {"t_ref_ms": t_ref.tolist(), "t_ms": t.tolist()}
    placement = {**placement, "threads": threads, "engine": job["engine"]}
    print(json.dumps({"results": results, "placement": placement}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
