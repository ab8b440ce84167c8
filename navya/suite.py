"""pytest plugin behind ``pytest benchmarks/``: options, session state, fixtures, summary.

Loaded by the repository's ``conftest.py`` (``pytest_plugins = ["navya.suite"]``). The suite is
parametrized over the variant registry (:mod:`navya.compress.variants`); every figure of a
variant is computed once per run and cached on the session state (``config.stash``), whichever
test asks first. Budget checks record their verdicts there, and the terminal summary and the
report files (``summary.csv``, ``summary.md``, ``tradeoff.png``) are written from it.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REFERENCE = "fp32"
DEFAULT_DATA = "data/synth"  # relative to the rootdir; generated on first use
STATE_KEY = pytest.StashKey["SuiteState"]()

SUMMARY_COLUMNS = [
    "variant", "map", "map_drop_points", "size_mb", "size_ratio", "size_zip_mb",
    "zip_size_ratio", "speedup", "speedup_ci_low", "speedup_ci_high", "macs",
    "macs_reduction", "sparsity", "peak_mem_mb", "rss_mb", "latency_ms_median", "fps",
    "net_latency_ms_median", "transform_s", "status",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("navya", "navya regression suite (pytest benchmarks/)")
    g.addoption("--navya-data", default=None,
                help=f"VOC root to evaluate on (default: the embedded synthetic set, generated "
                     f"into <rootdir>/{DEFAULT_DATA} on first use)")
    g.addoption("--navya-checkpoint", default=None,
                help="fp32 reference checkpoint (default: the shipped navya checkpoint)")
    g.addoption("--navya-variants", default=None,
                help="comma-separated variant names, or 'all' (default: every registered "
                     "variant not tagged 'slow')")
    g.addoption("--navya-threads", default="1,all",
                help="thread counts for the latency benchmarks, e.g. '1,all' (default)")
    g.addoption("--navya-eval-images", type=int, default=500,
                help="evaluate mAP on the first N images of the split (default 500)")
    g.addoption("--navya-split", default="val", help="evaluation split (default val)")
    g.addoption("--navya-rounds", type=int, default=30,
                help="timed rounds per latency measurement (default 30)")
    g.addoption("--navya-report-dir", default="reports/latest",
                help="where summary.csv, summary.md and tradeoff.png go")
    g.addoption("--navya-budgets", default=None,
                help="budgets file (default <rootdir>/benchmarks/budgets.toml)")
    g.addoption("--navya-baselines", default=None,
                help="baselines folder (default <rootdir>/benchmarks/baselines)")
    g.addoption("--navya-update-baselines", action="store_true",
                help="rewrite the deterministic baselines from this run (explicit refresh)")
    g.addoption("--navya-no-rss", action="store_true",
                help="skip the per-variant subprocess peak-RSS measurement")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "navya_budget: a budget check of a compression variant")
    state = SuiteState(config)
    config.stash[STATE_KEY] = state
    if config.getoption("navya_variants") is not None:
        state.selected_variants()  # an unknown name is a usage error before collection


def _thread_counts(spec: str) -> list[int]:
    out = []
    for part in spec.split(","):
        part = part.strip()
        n = (os.cpu_count() or 1) if part == "all" else int(part)
        if n < 1:
            raise pytest.UsageError(f"--navya-threads: thread counts must be >= 1, got {part}")
        if n not in out:
            out.append(n)
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state: SuiteState = metafunc.config.stash[STATE_KEY]
    if "variant" in metafunc.fixturenames:
        names = state.selected_variants()
        metafunc.parametrize("variant", names, ids=names)
    if "threads" in metafunc.fixturenames:
        counts = _thread_counts(metafunc.config.getoption("navya_threads"))
        metafunc.parametrize("threads", counts, ids=[f"threads={n}" for n in counts])


@pytest.fixture(scope="session")
def navya_suite(pytestconfig: pytest.Config) -> SuiteState:
    """The session's suite state, set up on first use (data, checkpoint, budgets)."""
    state: SuiteState = pytestconfig.stash[STATE_KEY]
    state.setup()
    yield state
    state.teardown()


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    import torch

    from navya.metrics.latency import steady_allocator

    machine_info["navya"] = {
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        "navya_threads": config.getoption("navya_threads"),
        "cpu_count": os.cpu_count(),
        "allocator": steady_allocator(),
    }


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    state: SuiteState | None = config.stash.get(STATE_KEY, None)
    if state is None or not state.measured:
        return
    rows = state.summary_rows()
    tr = terminalreporter
    tr.write_sep("=", "navya summary")
    for line in state.banner:
        tr.write_line(line, yellow=True, bold=True)
    tr.write_line(format_summary_table(rows))
    paths = state.write_reports(rows)
    if paths:
        tr.write_line("reports: " + ", ".join(str(p) for p in paths))


# -- summary formatting --------------------------------------------------------------------------


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def format_summary_table(rows: list[dict]) -> str:
    cols = [("variant", "variant", "s"), ("mAP%", "map", ".2%"),
            ("drop pts", "map_drop_points", "+.2f"), ("size MB", "size_mb", ".2f"),
            ("size x", "size_ratio", ".2f"), ("zip x", "zip_size_ratio", ".2f"),
            ("speedup", "speedup", ".2f"), ("GMACs", "macs", ".3f"),
            ("sparsity", "sparsity", ".1%"), ("peak MB", "peak_mem_mb", ".1f"),
            ("ms (t=1)", "latency_ms_median", ".1f"), ("FPS", "fps", ".1f"),
            ("status", "status", "s")]
    table = [[h for h, _, _ in cols]]
    for r in rows:
        cells = []
        for _, key, spec in cols:
            v = r.get(key)
            if key == "macs" and v is not None:
                v = v / 1e9
            cells.append(_fmt(v, spec))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) if i and i < len(cols) - 1 else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def summary_markdown(rows: list[dict], class_rows: dict[str, dict[str, float]],
                     banner: list[str]) -> str:
    out = ["# navya summary", ""]
    out += [f"> {b}" for b in banner] + ([""] if banner else [])
    head = ["variant", "status", "mAP (%)", "drop (pts)", "size (MB)", "size ratio",
            "speedup (t=1)", "MACs (G)", "sparsity (%)", "peak mem (MB)", "median (ms)", "FPS"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for r in rows:
        sp = _fmt(r.get("speedup"), ".2f")
        if r.get("speedup_ci_low") is not None:
            sp += f" [{r['speedup_ci_low']:.2f}, {r['speedup_ci_high']:.2f}]"
        macs = r.get("macs")
        out.append("| " + " | ".join([
            r["variant"], r["status"], _fmt(None if r.get("map") is None else r["map"] * 100, ".2f"),
            _fmt(r.get("map_drop_points"), "+.2f"), _fmt(r.get("size_mb"), ".2f"),
            _fmt(r.get("size_ratio"), ".2f"), sp,
            _fmt(None if macs is None else macs / 1e9, ".3f"),
            _fmt(None if r.get("sparsity") is None else r["sparsity"] * 100, ".1f"),
            _fmt(r.get("peak_mem_mb"), ".1f"), _fmt(r.get("latency_ms_median"), ".1f"),
            _fmt(r.get("fps"), ".1f")]) + " |")
    if class_rows:
        variants = list(class_rows)
        classes = list(next(iter(class_rows.values())))
        out += ["", "## AP per class (%)", "",
                "| class | " + " | ".join(variants) + " |", "|" + "---|" * (len(variants) + 1)]
        for c in classes:
            out.append(f"| {c} | " + " | ".join(
                _fmt(None if class_rows[v].get(c) is None else class_rows[v][c] * 100, ".1f")
                for v in variants) + " |")
    return "\n".join(out) + "\n"


# -- session state ---------------------------------------------------------------------------------


class _UInt8Images:
    """Evaluation images decoded once and kept as uint8 (the suite scores every variant on them)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.class_names = dataset.class_names
        self._images: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def target(self, i: int) -> dict:
        return self.dataset.target(i)

    def __getitem__(self, i: int):
        import torch

        if i not in self._images:
            img, _ = self.dataset[i]
            self._images[i] = (img * 255).round().to(torch.uint8)
        return self._images[i].float() / 255, self.dataset.target(i)


class SuiteState:
    """Everything one ``pytest benchmarks/`` run measures, computed once and cached."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.rootdir = Path(config.rootpath)
        self.ready = False
        self.measured: set[str] = set()
        self.banner: list[str] = []
        self.checks: dict[str, dict[str, Any]] = defaultdict(dict)
        self.notes: dict[str, list[str]] = defaultdict(list)
        self._cache: dict[tuple[str, str], Any] = {}
        self._selected: list[str] | None = None

    # -- options and selection --

    def opt(self, name: str):
        return self.config.getoption(name)

    def selected_variants(self) -> list[str]:
        if self._selected is None:
            from navya.compress.variants import variant_names

            spec = self.opt("navya_variants")
            known = variant_names()
            if spec is None:
                slow = set(variant_names("slow"))
                names = [n for n in known if n not in slow]
                if slow:
                    self.banner.append(
                        f"not in this run (tagged slow; --navya-variants all runs them): "
                        f"{', '.join(n for n in known if n in slow)}")
            elif spec.strip() == "all":
                names = known
            else:
                names = [s.strip() for s in spec.split(",") if s.strip()]
                unknown = [n for n in names if n not in known]
                if unknown:
                    raise pytest.UsageError(
                        f"--navya-variants: unknown variant(s) {', '.join(unknown)}; known: "
                        f"{', '.join(known)}")
            self._selected = names
        return self._selected

    def _path_opt(self, name: str, default: str) -> Path:
        value = self.opt(name)
        return Path(value) if value else self.rootdir / default

    # -- setup --

    def setup(self) -> None:
        if self.ready:
            return
        import torch

        from navya.budgets import load_budgets
        from navya.compress.variants import CompressContext, variant_names
        from navya.data.synthetic import read_fingerprint
        from navya.data.voc import VOCDataset
        from navya.models import load_checkpoint
        from navya.models.checkpoint import sha256_file

        self.budgets = load_budgets(self._path_opt("navya_budgets", "benchmarks/budgets.toml"),
                                    variant_names())
        self.baselines_dir = self._path_opt("navya_baselines", "benchmarks/baselines")
        data = self.opt("navya_data")
        if data is None:
            data = self.rootdir / DEFAULT_DATA
            if not (data / "VOCdevkit").exists():
                self._say(f"navya: generating the embedded synthetic data set into {data} "
                          "(one time, about a minute)")
                from navya.data.synthetic import generate

                generate(data)
        ckpt_path = self.opt("navya_checkpoint")
        if ckpt_path is None:
            from navya.cli import DEFAULT_CHECKPOINT

            ckpt_path = DEFAULT_CHECKPOINT
        self.reference, self.checkpoint = load_checkpoint(ckpt_path)
        names = self.checkpoint.class_names or None
        split = self.opt("navya_split")
        limit = self.opt("navya_eval_images")
        self.eval_dataset = _UInt8Images(VOCDataset(data, split, class_names=names, limit=limit))
        self.class_names = self.eval_dataset.class_names
        self.data_fingerprint = read_fingerprint(self.eval_dataset.dataset.voc_dir)
        trained_on = self.checkpoint.meta.get("data_fingerprint")
        if trained_on and self.data_fingerprint and trained_on != self.data_fingerprint:
            self.banner.append(
                f"WARNING: data fingerprint {self.data_fingerprint[:12]} differs from the one "
                f"the checkpoint was trained with ({trained_on[:12]}): accuracy figures and "
                f"baselines are not comparable")
        try:
            train = VOCDataset(data, "train", class_names=names)
        except Exception as exc:  # no train split: calibration/fine-tune variants will say so
            train = None
            self.banner.append(f"no train split in {data} ({exc}): variants that calibrate or "
                               "fine-tune cannot be built")
        self.context = CompressContext(train_dataset=train, progress=False, seed=0)
        self.provenance = {
            "checkpoint_sha256": sha256_file(self.checkpoint.path),
            "data_fingerprint": self.data_fingerprint,
            "eval_images": len(self.eval_dataset),
            "split": split,
            "torch_version": torch.__version__,
        }
        self.latency_images = [self.eval_dataset[0][0]]
        self.rounds = self.opt("navya_rounds")
        self.ready = True

    def teardown(self) -> None:
        pass

    def _say(self, line: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(line)

    def _cached(self, kind: str, variant: str, compute: Callable[[], Any]) -> Any:
        key = (kind, variant)
        if key not in self._cache:
            self._cache[key] = compute()
            self.measured.add(variant)
        return self._cache[key]

    # -- figures, each computed once per run --

    def model(self, variant: str):
        from navya.compress.variants import get_variant

        def build():
            t0 = time.perf_counter()
            m = get_variant(variant).apply(self.reference, self.context)
            self._cache[("transform_s", variant)] = time.perf_counter() - t0
            return m.eval()

        return self._cached("model", variant, build)

    def timed_model(self, variant: str, threads: int):
        """The copy of ``variant``'s model that is timed at ``threads`` intra-op threads.

        A fresh :func:`~navya.metrics.latency.timing_copy` whose first call runs at
        ``threads`` (eager INT8 kernels are built for the thread count of their first call;
        the model in :meth:`model` was evaluated with all cores), one per thread count.
        """
        import torch

        from navya.metrics.latency import num_threads, timing_copy

        def build():
            m = timing_copy(self.model(variant))
            with num_threads(threads), torch.inference_mode():
                m(self.latency_images)
            return m

        return self._cached(f"timed_model@{threads}", variant, build)

    def evaluation(self, variant: str):
        from navya.metrics.evaluate import evaluate_model
        from navya.metrics.latency import num_threads

        def run():
            with num_threads(os.cpu_count() or 1):
                return evaluate_model(self.model(variant), self.eval_dataset, batch_size=8)

        return self._cached("evaluation", variant, run)

    def map(self, variant: str) -> float:
        return self.evaluation(variant).map("all-point")

    def map_drop_points(self, variant: str) -> float:
        return (self.map(REFERENCE) - self.map(variant)) * 100.0

    def stats(self, variant: str) -> dict:
        from navya.metrics.model_stats import count_macs, param_stats, serialized_size

        def run():
            m = self.model(variant)
            ps, size = param_stats(m), serialized_size(m)
            x = m.preprocess(self.latency_images)
            macs = count_macs(m.core, (x,))
            return {"params": ps.params, "nonzero_params": ps.nonzero_params,
                    "sparsity": ps.sparsity, "prunable_sparsity": ps.prunable_sparsity,
                    "size_bytes": size.size_bytes, "size_zip_bytes": size.size_zip_bytes,
                    "size_mb": size.size_mb, "size_zip_mb": size.size_zip_mb,
                    "macs": macs.macs, "effective_macs": macs.effective_macs}

        return self._cached("stats", variant, run)

    def speedup(self, variant: str):
        """fp32 vs ``variant``, end to end (post-processing included), threads=1, interleaved."""
        from navya.metrics.latency import compare_latency

        def run():
            ref, m = self.timed_model(REFERENCE, 1), self.timed_model(variant, 1)
            imgs = self.latency_images
            return compare_latency(lambda: ref(imgs), lambda: m(imgs), threads=1,
                                   rounds=self.rounds, warmup=5)

        return self._cached("speedup", variant, run)

    def latency(self, variant: str):
        """Latency stats at threads=1: from the same-run comparison when there is one."""
        from navya.metrics.latency import measure_latency

        if ("speedup", variant) in self._cache:
            return self._cache[("speedup", variant)].b
        m, imgs = self.timed_model(variant, 1), self.latency_images
        return self._cached("latency", variant,
                            lambda: measure_latency(lambda: m(imgs), threads=1,
                                                    rounds=self.rounds, warmup=5))

    def net_latency(self, variant: str):
        from navya.metrics.latency import measure_latency

        def run():
            m = self.timed_model(variant, 1)
            x = m.preprocess(self.latency_images)
            return measure_latency(lambda: m.core(x), threads=1, rounds=self.rounds, warmup=5)

        return self._cached("net_latency", variant, run)

    def peak_mem_mb(self, variant: str) -> float:
        import torch

        from navya.metrics.latency import num_threads
        from navya.metrics.memory import peak_alloc_mb

        def run():
            m, imgs = self.model(variant), self.latency_images
            with num_threads(1), torch.inference_mode():
                return peak_alloc_mb(lambda: m(imgs))

        return self._cached("peak_mem_mb", variant, run)

    def rss_mb(self, variant: str) -> float | None:
        from navya.metrics.memory import subprocess_peak_rss_mb

        if self.opt("navya_no_rss"):
            return None
        return self._cached("rss_mb", variant, lambda: subprocess_peak_rss_mb(
            self.model(variant), (self.latency_images,), threads=1))

    def deterministic_figures(self, variant: str) -> dict:
        ev = self.evaluation(variant)
        ap = {c: (None if math.isnan(v) else v) for c, v in ev.ap["all-point"].items()}
        s = self.stats(variant)
        return {"map": ev.map("all-point"), "map_voc07": ev.map("voc07"), "ap": ap,
                **{k: s[k] for k in ("size_bytes", "size_zip_bytes", "macs", "effective_macs",
                                     "params", "nonzero_params", "sparsity",
                                     "prunable_sparsity")}}

    # -- budget checks --

    def check(self, variant: str, key: str, measure: Callable[[], float]) -> None:
        """Assert one budget of ``variant``; skip loudly where it does not apply."""
        from navya.budgets import BudgetCheck

        if variant == REFERENCE and key != "max_peak_mem_mb":
            pytest.skip(f"{variant} is the reference that {key} is measured against")
        limit = self.budgets.for_variant(variant).get(key)
        if limit is None:
            self.checks[variant][key] = "no budget"
            pytest.skip(f"NO BUDGET: variant {variant!r} has no {key} in {self.budgets.path}; "
                        f"measured {measure():.4g} (add it to guard this figure)")
        result = BudgetCheck(variant, key, float(measure()), limit)
        self.checks[variant][key] = result
        assert result.passed, result.message()

    def check_baseline(self, variant: str) -> None:
        from navya.budgets import (
            baseline_path,
            compare_baseline,
            provenance_mismatch,
            read_baseline,
            write_baseline,
        )

        path = baseline_path(self.baselines_dir, variant)
        figures = self.deterministic_figures(variant)
        if self.opt("navya_update_baselines"):
            write_baseline(path, variant, figures, self.provenance)
            self.checks[variant]["baseline"] = "updated"
            return
        baseline = read_baseline(path)
        if baseline is None:
            self.checks[variant]["baseline"] = "missing"
            pytest.skip(f"NO BASELINE for variant {variant!r} ({path}): record one with "
                        "--navya-update-baselines")
        mismatch = provenance_mismatch(baseline, self.provenance)
        if mismatch:
            self.checks[variant]["baseline"] = "other provenance"
            pytest.skip(f"BASELINE NOT COMPARABLE for {variant!r}: {'; '.join(mismatch)}; "
                        "refresh it explicitly with --navya-update-baselines")
        deviations = compare_baseline(variant, baseline, figures, self.budgets.tolerances)
        self.checks[variant]["baseline"] = "ok" if not deviations else "DEVIATES"
        assert not deviations, "deterministic figures moved from the baseline " \
            f"{path}:\n" + "\n".join(d.message() for d in deviations)

    # -- summary --

    def _get(self, kind: str, variant: str):
        return self._cache.get((kind, variant))

    def status(self, variant: str) -> str:
        from navya.budgets import BudgetCheck

        checks = self.checks.get(variant, {})
        failed = [k for k, c in checks.items() if isinstance(c, BudgetCheck) and not c.passed]
        if checks.get("baseline") == "DEVIATES":
            failed.append("baseline")
        if failed:
            return "FAIL: " + ",".join(failed)
        if any(isinstance(c, BudgetCheck) for c in checks.values()):
            return "PASS"
        if variant == REFERENCE:
            return "reference"
        return "NO BUDGET" if checks else "not checked"

    def summary_rows(self) -> list[dict]:
        order = [v for v in (self._selected or []) if v in self.measured]
        order += sorted(self.measured - set(order))
        ref_stats = self._get("stats", REFERENCE)
        ref_eval = self._get("evaluation", REFERENCE)
        rows = []
        for v in order:
            row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
            row["variant"] = v
            ev = self._get("evaluation", v)
            if ev is not None:
                row["map"] = ev.map("all-point")
                if ref_eval is not None:
                    row["map_drop_points"] = (ref_eval.map("all-point") - row["map"]) * 100
            st = self._get("stats", v)
            if st is not None:
                row.update(size_mb=st["size_mb"], size_zip_mb=st["size_zip_mb"],
                           macs=st["macs"], sparsity=st["sparsity"])
                if ref_stats is not None:
                    row["size_ratio"] = ref_stats["size_bytes"] / st["size_bytes"]
                    row["zip_size_ratio"] = ref_stats["size_zip_bytes"] / st["size_zip_bytes"]
                    row["macs_reduction"] = 1 - st["macs"] / ref_stats["macs"]
            sp = self._get("speedup", v)
            if sp is not None:
                row.update(speedup=sp.speedup, speedup_ci_low=sp.ci_low, speedup_ci_high=sp.ci_high)
            lat = sp.b if sp is not None else self._get("latency", v)
            if lat is None and v == REFERENCE:  # the reference, timed in the first comparison
                lat = next((r.a for (kind, _), r in self._cache.items() if kind == "speedup"),
                           None)
            if lat is not None:
                row.update(latency_ms_median=lat.median_ms, fps=lat.fps)
            net = self._get("net_latency", v)
            if net is not None:
                row["net_latency_ms_median"] = net.median_ms
            row["peak_mem_mb"] = self._get("peak_mem_mb", v)
            row["rss_mb"] = self._get("rss_mb", v)
            row["transform_s"] = self._get("transform_s", v)
            row["status"] = self.status(v)
            rows.append(row)
        return rows

    def write_reports(self, rows: list[dict]) -> list[Path]:
        from navya._io import atomic_write_text

        out_dir = Path(self.opt("navya_report_dir"))
        if not out_dir.is_absolute():
            out_dir = Path(self.config.invocation_params.dir) / out_dir
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r[k]) for k in SUMMARY_COLUMNS})
        atomic_write_text(out_dir / "summary.csv", buf.getvalue())
        class_rows = {}
        for r in rows:
            ev = self._get("evaluation", r["variant"])
            if ev is not None:
                class_rows[r["variant"]] = {c: (None if math.isnan(a) else a)
                                            for c, a in ev.ap["all-point"].items()}
        atomic_write_text(out_dir / "summary.md", summary_markdown(rows, class_rows, self.banner))
        paths = [out_dir / "summary.csv", out_dir / "summary.md"]
        plot_rows = [r for r in rows if r.get("map") is not None
                     and r.get("latency_ms_median") is not None and r.get("size_mb") is not None]
        if plot_rows:
            from navya.report import plot_tradeoff

            plot_tradeoff(plot_rows, out_dir / "tradeoff.png",
                          budgets=getattr(getattr(self, "budgets", None), "variants", None))
            paths.append(out_dir / "tradeoff.png")
        return paths
