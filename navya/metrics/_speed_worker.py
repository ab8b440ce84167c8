"""Worker of :func:`navya.metrics.speed.run_speed_job`: times pickled models in a fresh process.

Usage: ``python -m navya.metrics._speed_worker JOB.json``. Loads the reference and each
candidate (whole pickled modules written by the parent a moment ago), pins the timing thread,
and times each candidate against the reference with
:func:`navya.metrics.latency.compare_latency`; then each model named in ``builds`` against its
stored build (``<name>@build``: the stored build is the pair's reference) and, with
``pipeline``, the reference's network alone against its end-to-end call
(``<reference>@pipeline``). Prints one JSON line ``{"results": {name: {"t_ref_ms": [...],
"t_ms": [...]}}, "errors": {name: why}, "placement": {...}}``: a stored build that cannot be
loaded is an entry of ``errors``, not a failed job. Nothing runs on import.
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

    def timed(fn_a, fn_b) -> dict:
        t_a, t_b = time_interleaved(fn_a, fn_b, threads=threads, rounds=job["rounds"],
                                    warmup=job["warmup"])
        return {"t_ref_ms": t_a.tolist(), "t_ms": t_b.tolist()}

    results, errors = {}, {}
    ref_name = job.get("reference_name", "reference")
    with pinned(job["cpu"]) as placement:
        ref = load(job["reference"], None)
        candidates = [(name, load(path, name)) for name, path in job["candidates"].items()]
        if job["yardstick"]:
            candidates.append((YARDSTICK, None))
        for name, model in candidates:
            fn = yardstick() if model is None else (lambda m=model: m(images))
            results[name] = timed(lambda: ref(images), fn)
        current = {ref_name: ref, **{n: m for n, m in candidates if m is not None}}
        for name, path in job.get("builds", {}).items():
            try:
                # the stored build of this machine's speed baseline (its hash was checked by
                # the parent); it gets the same injected post-processing slowdown, not the
                # network one: it stands for the code as it was
                stored = load(path, None)
            except Exception as exc:  # an old pickle that today's classes cannot load
                errors[f"{name}@build"] = f"{type(exc).__name__}: {exc}"
                continue
            model = current[name]
            results[f"{name}@build"] = timed(lambda s=stored: s(images),
                                             lambda m=model: m(images))
        if job.get("pipeline"):
            with torch.inference_mode():
                x = ref.preprocess(images)
            results[f"{ref_name}@pipeline"] = timed(lambda: ref.core(x), lambda: ref(images))
    placement = {**placement, "threads": threads, "engine": job["engine"]}
    print(json.dumps({"results": results, "errors": errors, "placement": placement}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
