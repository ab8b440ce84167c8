"""The engine: :class:`Bench`, one run's figures and verdicts, composed of one part per
responsibility (each in its own module of :mod:`navya.bench`):

===============  =============================================================================
part             what it does
===============  =============================================================================
``core``         the memo of this run's figures, the profile, what a variant is
``build``        variant -> model (catalogue, artifact cache), finiteness, timed copies, stored
                 builds
``accuracy``     VOC evaluation (cached by what it depends on), mAP, drop, bootstrap intervals
``cost``         parameters, sparsity, size, MACs, latency, memory
``speed``        fresh pinned worker runs against the reference (ABBA pairs)
``memo``         figures kept between runs, keyed by their inputs and the measuring code
``rows``         a variant's Measurement and same-run figures; its status
``gates``        budgets and baselines, the refresh policy
``speedgate``    speed against this machine's recorded runs
===============  =============================================================================

The parts share one state (:class:`~navya.bench.core.BenchCore`): the memo, so each variant is
built once and each figure computed once, whichever check asks first.
"""

from __future__ import annotations

from torch import nn
from torch.utils.data import Dataset

from navya.bench.accuracy import Accuracy
from navya.bench.build import Builds
from navya.bench.core import BenchCore
from navya.bench.cost import Costs
from navya.bench.gates import Gates
from navya.bench.memo import Memo
from navya.bench.rows import Rows
from navya.bench.settings import BenchSettings, Workload
from navya.bench.speed import Speed
from navya.bench.speedgate import SpeedGate
from navya.metrics.measure import Measurement


class Bench(SpeedGate, Gates, Rows, Memo, Speed, Costs, Accuracy, Builds, BenchCore):

    """One measurement run over ``workload``.

    Args:
        workload: the reference model and the data.
        settings: how figures are measured.
        budgets: budgets and tolerances (:func:`navya.budgets.load_budgets`); None: every
            budget check says NO BUDGET.
        baselines_dir: the folder of deterministic baselines; None: NO BASELINE.
        models: prebuilt models by name, used instead of the catalogue's variants (e.g.
            ``navya measure`` of a model built elsewhere). The reference name maps to
            ``workload.reference`` unless given here.
        reference: the name of the reference row (default ``fp32``).
        speed_dir: the folder of per-machine speed baselines (default
            ``<baselines_dir>/speed``).
        cache: a :class:`~navya._cache.ResultStore` that keeps built artifacts (the
            :class:`~navya.compress.cache.ArtifactCache`) and their evaluations between runs,
            each by a hash of everything it depends on; None: everything is built and
            evaluated in this run.
        rebuild: ignore (and replace) the cache entries of these variants, or of all (True).
        remeasure: time and measure memory afresh even where the cache holds figures measured
            on the same inputs (:meth:`measurement_key`).
        user_model: why the reference is not the model the budgets were written for (a
            user's checkpoint); its variants are held only to the budgets relative to it
            (:attr:`navya.figures.BudgetFigure.relative`), the absolute ones are NOT
            APPLICABLE (measured and shown). None: every budget applies.
    """


def measure(model: nn.Module, dataset: Dataset, *, name: str, threads: int = 1,
            batch_size: int = 1, eval_images: int | None = None, latency_rounds: int = 30,
            warmup: int = 5, rss: bool = True, progress: bool = False) -> Measurement:
    """The complete :class:`Measurement` of one model on ``dataset`` (a one-model run).

    ``dataset`` yields ``(image [3, H, W] in [0, 1], target)`` and has ``class_names``; the
    accuracy is scored on its first ``eval_images`` items (all when None), the cost figures
    use its first ``batch_size`` images, timed at ``threads`` threads. The model is used in
    eval mode and not changed (its training flag is restored).

    Raises:
        ValueError: invalid settings, or fewer than ``batch_size`` images.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if eval_images is not None and (isinstance(eval_images, bool)
                                    or not isinstance(eval_images, int) or eval_images < 1):
        raise ValueError(f"eval_images must be a positive integer or None, got {eval_images!r}")
    settings = BenchSettings(threads=threads, rounds=latency_rounds, warmup=warmup,
                             batch_size=batch_size, rss=rss, progress=progress)
    if len(dataset) < batch_size:
        raise ValueError(f"the data set has {len(dataset)} images, fewer than batch_size "
                         f"{batch_size}")
    was_training = model.training
    try:
        bench = Bench(Workload(model, dataset, eval_images=eval_images), settings,
                      reference=name)
        return bench.measurement(name)
    finally:
        model.train(was_training)
