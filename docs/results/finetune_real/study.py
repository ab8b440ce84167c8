"""Issue 29's study: a detector from a few hundred real photographs, three starts compared.

Each run is one ``navya train --preset finetune`` command (printed and recorded); the study
reads back what each checkpoint recorded (val mAP after every epoch, the best epoch, minutes)
and writes ``results.json``, ``results.md`` and ``curves.png`` (val mAP against training
minutes, one panel per data set, one line per start) into ``--out`` (default: this folder).

    python docs/results/finetune_real/study.py --runs /tmp/runs RUN...

RUN is ``name=SET:START[:extra navya train options]``, SET a VOC folder, START ``tfod-person``
(the preset as it is: the shipped real-photograph detector), ``imagenet`` (``--backbone-weights
imagenet``: the TFLite ImageNet classifier beside the checkout), ``synthetic`` (``--init`` the
shipped synthetic checkpoint) or ``scratch`` (``--init none --backbone-weights none
--freeze-epochs 0 --no-frozen-bn``: nothing to freeze). ``results.json`` names the CPU. A run whose
checkpoint is already in ``--runs`` is read, not trained again (``--force`` retrains).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
STARTS = {
    "tfod-person": [],  # the preset's start: the shipped real-photograph detector
    "imagenet": ["--backbone-weights", "imagenet"],
    "synthetic": ["--init", str(ROOT / "navya/checkpoints/ssdlite_mobilenet_v2.pt")],
    "scratch": ["--init", "none", "--backbone-weights", "none", "--freeze-epochs", "0",
                "--no-frozen-bn"],
}


def parse_run(text: str) -> dict:
    name, _, rest = text.partition("=")
    parts = rest.split(":", 2)
    if not name or len(parts) < 2 or parts[1] not in STARTS:
        raise SystemExit(f"bad run {text!r}: want name=SET:START[:options], START one of "
                         f"{', '.join(STARTS)}")
    return {"name": name, "data": parts[0], "start": parts[1],
            "extra": shlex.split(parts[2]) if len(parts) > 2 else []}


def command(run: dict, out: Path) -> list[str]:
    return ["navya", "train", "--data", run["data"], "--out", str(out), "--preset", "finetune",
            "--threads", "2", *STARTS[run["start"]], *run["extra"]]


def read(out: Path) -> dict:
    import torch

    meta = torch.load(out, map_location="cpu", weights_only=True)["meta"]
    return {k: meta.get(k) for k in ("val", "early_stop", "stopped", "train_seconds",
                                     "train_iterations", "options", "augment", "init",
                                     "command")}


def plot(results: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sets = sorted({r["set"] for r in results})
    fig = Figure(figsize=(6.0 * len(sets), 4.2), dpi=110)
    FigureCanvasAgg(fig)
    styles = {"tfod-person": ("tab:green", "-"), "imagenet": ("tab:blue", "-"),
              "synthetic": ("tab:orange", "--"), "scratch": ("tab:gray", ":")}
    for i, name in enumerate(sets):
        ax = fig.add_subplot(1, len(sets), i + 1)
        for r in (r for r in results if r["set"] == name):
            hist = r["early_stop"]["history"]
            color, line = styles.get(r["start"], ("tab:purple", "-."))
            best = r["early_stop"]
            at = next(h["minutes"] for h in hist if h["epoch"] == best["best_epoch"])
            ax.plot([h["minutes"] for h in hist], [h["map"] for h in hist], line, color=color,
                    marker="o", markersize=3,
                    label=f"{r['name']} ({r['start']}): best {best['best_map']:.3f}")
            ax.plot([at], [best["best_map"]], "*", color=color, markersize=11,
                    markeredgecolor="black", markeredgewidth=0.5)
        ax.axhline(0.5, color="black", linewidth=0.6, alpha=0.5)
        ax.set_title(f"{name}: val mAP@0.5 after each epoch")
        ax.set_xlabel("training minutes (2 cores)")
        ax.set_ylabel("val mAP@0.5 (all-point)")
        ax.set_ylim(0, 1)
        ax.set_xlim(0, 15)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    cpus = sorted({f"{r['cpu']['model']}, {r['cpu']['cores']} cores, class {r['cpu']['class']}"
                   for r in results if r.get("cpu")})
    if cpus:
        fig.suptitle(f"navya train --preset finetune; star: best epoch; CPU: {'; '.join(cpus)}",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def _cpu() -> dict:
    """The CPU the figures were measured on: its model name, navya's class, the flags that
    class is made of, and the cores this process may use."""
    from navya.cpuclass import cpu_flags, host_class

    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")
    flags = cpu_flags()
    shown = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")
    return {"model": model, "class": host_class(flags), "cores": len(os.sched_getaffinity(0)),
            "flags": [f for f in shown if f in flags]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN")
    ap.add_argument("--runs", dest="runs_dir", type=Path, required=True,
                    help="where the checkpoints and logs go")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    cpu = _cpu()
    for run in map(parse_run, args.runs):
        out = args.runs_dir / f"{run['name']}.pt"
        cmd = command(run, out)
        if args.force or not out.exists():
            print("$ " + shlex.join(cmd), flush=True)
            t0 = time.perf_counter()
            with open(args.runs_dir / f"{run['name']}.log", "w") as log:
                subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
            print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
        results.append({"name": run["name"], "set": Path(run["data"]).name,
                        "start": run["start"], "cpu": cpu, **read(out)})
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out / "curves.png")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
