"""The history check's false-alarm rate over unchanged runs (issue 27, item 7).

Usage: python docs/results/history_check/study.py RUNS_DIR [N] [INJECT]
Runs ``pytest benchmarks/test_latency.py --navya-variants fp32,int8-ptq`` N times (default 12)
with unchanged code, each saved by pytest-benchmark under RUNS_DIR, unless RUNS_DIR already holds
them; then judges every run i against the runs before it by two rules and prints the table.
With INJECT (a ``--navya-inject-slowdown`` spec, e.g. ``int8-ptq:network:0.10``) it then saves
one more run with that slowdown under RUNS_DIR/injected/ and judges it against the unchanged
runs (what the rules catch).

* ``absolute 10 %``: the workflow's old rule (pytest-benchmark ``--benchmark-compare-fail
  median:10%``): a benchmark's median more than 10 % above the previous run's;
* ``ratio``: ``navya history-check`` (navya.history): each variant's median over fp32's of the
  same run and thread count, against the median of the previous runs' ratios (at least 3, at
  most 10), tolerance from their spread.

Every figure of an unchanged run that a rule flags is a false alarm.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from navya.history import MIN_HISTORY, judge, read_run, saved_runs


def record(runs_dir: Path, n: int, inject: str | None = None) -> None:
    for i in range(n):
        print(f"run {i + 1}/{n}", flush=True)
        subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_latency.py", "-q",
                        "-p", "no:cacheprovider", "--navya-variants", "fp32,int8-ptq",
                        *(["--navya-inject-slowdown", inject] if inject else []),
                        "--benchmark-autosave", f"--benchmark-storage={runs_dir}"], check=True)


def main() -> int:
    runs_dir = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    if not saved_runs(runs_dir):
        record(runs_dir.resolve(), n)
    runs = [read_run(p) for p in saved_runs(runs_dir) if "injected" not in p.parts]
    print(f"{len(runs)} unchanged runs in {runs_dir}\n")
    print("| run | figure | median ms | vs previous | absolute 10 % | t/t(fp32) | ratio rule |")
    print("|---:|---|---:|---:|---|---:|---|")
    abs_checked = abs_alarms = ratio_checked = ratio_alarms = 0
    for i in range(1, len(runs)):
        judged = {j.key: j for j in judge(runs[: i + 1])}
        for key, fig in sorted(runs[i].items()):
            prev = runs[i - 1].get(key)
            change = None if prev is None else fig.median_s / prev.median_s - 1
            abs_alarm = change is not None and change > 0.10
            abs_checked += change is not None
            abs_alarms += abs_alarm
            j = judged[key]
            if j.center is not None:
                ratio_checked += 1
                ratio_alarms += j.alarm
            rule = ("-" if j.ratio is None else "not judged" if j.center is None
                    else f"{'ALARM' if j.alarm else 'ok'} (tol {j.tolerance:.1%})")
            print(f"| {i + 1} | {key[0]} {key[2]} | {fig.median_s * 1e3:.2f} | "
                  f"{'' if change is None else f'{change:+.1%}'} | "
                  f"{'ALARM' if abs_alarm else 'ok'} | "
                  f"{'' if j.ratio is None else f'{j.ratio:.3f}'} | {rule} |")
    print(f"\nabsolute 10 %: {abs_alarms} false alarms in {abs_checked} comparisons")
    print(f"ratio rule (>= {MIN_HISTORY} previous runs): {ratio_alarms} false alarms in "
          f"{ratio_checked} comparisons")
    if len(sys.argv) > 3:
        inject = sys.argv[3]
        injected_dir = runs_dir / "injected"
        if not saved_runs(injected_dir):
            record(injected_dir.resolve(), 1, inject)
        (path,) = saved_runs(injected_dir)
        slowed = read_run(path)
        print(f"\none run with --navya-inject-slowdown {inject}, against the unchanged runs:\n")
        print("| figure | median ms | vs previous | absolute 10 % | t/t(fp32) | ratio rule |")
        print("|---|---:|---:|---|---:|---|")
        for j in judge([*runs, slowed]):
            change = j.median_change
            print(f"| {j.key[0]} {j.key[2]} | {j.median_s * 1e3:.2f} | "
                  f"{'' if change is None else f'{change:+.1%}'} | "
                  f"{'ALARM' if change is not None and change > 0.10 else 'ok'} | "
                  f"{'' if j.ratio is None else f'{j.ratio:.3f}'} | "
                  f"{'-' if j.center is None else ('ALARM' if j.alarm else 'ok')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
