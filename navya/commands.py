"""What each `navya` subcommand does (:mod:`navya.cli` parses the command line and calls one of
these with the parsed arguments; each returns the exit status)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from navya.errors import NavyaError
from navya.models.checkpoint import DEFAULT_CHECKPOINT


class CLIError(NavyaError):
    """An error to print as one line and exit 2."""

def data_synth(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from navya.data.synthetic import SyntheticConfig, generate

    splits = {"train": args.train, "val": args.val, "test": args.test}
    config = SyntheticConfig(seed=args.seed, image_size=args.image_size, splits=splits)
    t0 = time.perf_counter()
    with tqdm(total=sum(splits.values()), desc="synth", unit="img", dynamic_ncols=True) as bar:
        info = generate(args.out, config, workers=args.workers,
                        progress=lambda done, total: bar.update(done - bar.n))
    print(f"wrote {info.voc_dir} in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} {v} images / {info.num_objects[k]} objects"
                      for k, v in info.counts.items()))
    print(f"fingerprint {info.fingerprint}")
    return 0

def _load_dataset(data: str, split: str, class_names=None, limit=None, *, args=None,
                  decode_size: int | None = None):
    """A VOC split read with the command's ``--size-policy``; JPEGs larger than the model's
    input (``decode_size``) decode reduced."""
    from navya.data.voc import VOCDataset

    return VOCDataset(data, split=split, class_names=class_names, limit=limit,
                      size_policy=getattr(args, "size_policy", "image"), decode_size=decode_size,
                      other_classes=getattr(args, "other_classes", "error"))

#: ``navya train``'s options that a preset may set, with their values without one
TRAIN_DEFAULTS: dict[str, object] = {
    "init": None, "backbone_weights": None, "image_size": 320, "epochs": 12, "batch_size": 16,
    "lr": 3e-3, "warmup_iters": 150, "freeze_backbone": 0, "freeze_epochs": 0, "frozen_bn": False,
    "vflip": 0.5, "early_stop": 0, "max_minutes": None}


def train_options(args: argparse.Namespace) -> dict[str, object]:
    """The training options: what the command line gave, else the preset's, else
    :data:`TRAIN_DEFAULTS`."""
    preset = {}
    if getattr(args, "preset", None):
        from navya.finetune import PresetError, get_preset

        try:
            preset = get_preset(args.preset).options()
        except PresetError as exc:
            raise CLIError(str(exc)) from None
    out = {}
    for key, default in TRAIN_DEFAULTS.items():
        given = getattr(args, key, None)
        out[key] = given if given is not None else preset.get(key, default)
    # the start: --init (a whole detector) or --backbone-weights (a backbone), not both; the
    # one given replaces the preset's; "none" turns the preset's off (scratch)
    init, backbone = getattr(args, "init", None), getattr(args, "backbone_weights", None)
    if init not in (None, "none") and backbone not in (None, "none"):
        raise CLIError("--init and --backbone-weights both give the initial weights: pick one")
    if init not in (None, "none"):
        out["backbone_weights"] = None
    if backbone not in (None, "none"):
        out["init"] = None
    for key in ("init", "backbone_weights"):
        if out[key] == "none":
            out[key] = None
    return out


def train(args: argparse.Namespace) -> int:
    import torch

    from navya.data.synthetic import read_fingerprint
    from navya.finetune import load_start
    from navya.metrics.evaluate import evaluate_model
    from navya.models import build_model, save_checkpoint
    from navya.models.checkpoint import sha256_file
    from navya.models.init import (
        backbone_bn_eps,
        class_output_names,
        load_matching,
        resolve_backbone_weights,
        torchvision_backbone_state,
    )
    from navya.train import SSDAugment, TrainConfig, train

    opts = train_options(args)
    source_model, ckpt = load_start(opts["init"]) if opts["init"] else (None, None)
    if source_model is not None:  # the start's input size, whatever the preset says
        opts["image_size"] = source_model.image_size
    size = opts["image_size"]
    train_set = _load_dataset(args.data, args.split, limit=args.limit, args=args,
                              decode_size=size)
    names = train_set.class_names
    torch.manual_seed(args.seed)  # the initial weights: same --seed, same model
    init: dict = {}
    if source_model is not None:
        # every tensor that fits by name and shape; other classes: fresh class scores
        model = build_model(ckpt.arch, len(names) + 1, **ckpt.model_config)
        other = tuple(ckpt.class_names) != tuple(names)
        fresh = dict.fromkeys(class_output_names(model) if other else (),
                              f"class scores: {', '.join(ckpt.class_names)} in the source")
        report = load_matching(model, source_model.state_dict(), str(opts["init"]),
                               exclude=fresh)
        init = {"checkpoint": str(opts["init"]), "file": str(ckpt.path),
                "sha256": sha256_file(ckpt.path), "classes": list(ckpt.class_names),
                **report.as_dict()}
        if other:
            print(f"--init {opts['init']}: classes {', '.join(ckpt.class_names)} -> "
                  f"{', '.join(names)}: the last layer of each classification head starts "
                  "afresh")
        print(report.summary())
    else:
        model = build_model(args.arch, len(names) + 1, width_mult=args.width,
                            image_size=opts["image_size"])
        if opts["backbone_weights"]:
            state, origin = resolve_backbone_weights(opts["backbone_weights"],
                                                     bn_eps=backbone_bn_eps(model))
            report = load_matching(model, torchvision_backbone_state(model, state),
                                   str(opts["backbone_weights"]), scope="core.backbone.")
            init = {**origin, **report.as_dict()}
            print(report.summary())
    config = TrainConfig(epochs=opts["epochs"], batch_size=opts["batch_size"],
                         optimizer=args.optimizer, lr=opts["lr"],
                         warmup_iters=opts["warmup_iters"], weight_decay=args.weight_decay,
                         amp=args.amp, seed=args.seed, max_iters=args.max_iters)
    per_epoch = max(1, len(train_set) // config.batch_size)
    hooks = []
    freeze = opts["freeze_backbone"] or opts["freeze_epochs"] * per_epoch
    if freeze:
        from navya.train import freeze_backbone_for

        hooks.append(freeze_backbone_for(freeze))
        init["freeze_backbone_iters"] = freeze
    if opts["frozen_bn"]:
        from navya.finetune import frozen_backbone_bn

        hooks.append(frozen_backbone_bn)
        init["frozen_backbone_bn"] = True
    state = Path(args.out).with_suffix(".state.pt")
    if args.threads:
        torch.set_num_threads(args.threads)
    data_id = {"data": str(Path(args.data).resolve()), "split": args.split,
               "limit": args.limit, "fingerprint": read_fingerprint(train_set.voc_dir)}
    stopper = val = None
    if opts["early_stop"]:
        from navya.finetune import EarlyStop

        if not args.val_split:
            raise CLIError("--early-stop scores the val split after every epoch: give "
                           "--val-split")
        val = _load_dataset(args.data, args.val_split, class_names=names, args=args,
                            decode_size=model.image_size)
        stopper = EarlyStop(val, opts["early_stop"], resume=args.resume,
                            best_path=Path(args.out).with_suffix(".best.pt"),
                            iterations_per_epoch=per_epoch, data_id=data_id)
    augment = SSDAugment(p_vflip=opts["vflip"])
    print("training: " + ", ".join(f"{k} {v}" for k, v in opts.items() if v not in (None, 0))
          + f"; {len(train_set)} images, {per_epoch} iterations an epoch")
    result = train(model, train_set, config, state_path=state, resume=args.resume,
                   state_every_s=args.state_every, data_id=data_id, hooks=hooks,
                   augment=augment, on_epoch_end=stopper,
                   max_seconds=opts["max_minutes"] * 60 if opts["max_minutes"] else None)
    if result.stopped:
        print(f"stopped: {result.stopped}")
    if stopper is not None:
        stopper.restore_best(model)
        if stopper.best is not None:
            print(f"best epoch {stopper.best.epoch} of {len(stopper.history)}: val mAP "
                  f"{stopper.best.map:.4f} at {stopper.best.minutes:.1f} min; the checkpoint "
                  "holds its weights")
    meta = {
        "class_names": list(names),
        "train_config": {**config.__dict__},
        "train_data": str(args.data),
        "train_split": args.split,
        "data_fingerprint": read_fingerprint(train_set.voc_dir),
        "train_seconds": round(result.seconds, 1),
        "train_iterations": result.iterations,
        "final_loss": result.losses[-1] if result.losses else None,
        "command": " ".join(sys.argv),
        "init": init or None,  # where the initial weights came from (None: from scratch)
        "preset": args.preset,
        "options": opts,
        "augment": augment.describe(),
        "stopped": result.stopped or None,
        "early_stop": stopper.record() if stopper is not None else None,
    }
    if args.val_split:
        if val is None:
            val = _load_dataset(args.data, args.val_split, class_names=names, args=args,
                                decode_size=model.image_size)
        ev = evaluate_model(model, val, progress=True)
        meta["val"] = {"split": args.val_split, "images": len(val),
                       "map": ev.map("all-point"), "map_voc07": ev.map("voc07"),
                       "ap": ev.ap["all-point"]}
        print(f"val mAP@0.5 (all-point) {ev.map('all-point'):.4f}")
    save_checkpoint(args.out, model, meta)
    print(f"saved {args.out} ({result.iterations} iterations, {result.seconds / 60:.1f} min)")
    return 0

def evaluate(args: argparse.Namespace) -> int:
    from navya.metrics.evaluate import evaluate_model
    from navya.models import load_checkpoint

    model, ckpt = load_checkpoint(args.checkpoint)
    dataset = _load_dataset(args.data, args.split, class_names=ckpt.class_names or None,
                            limit=args.limit, args=args, decode_size=model.image_size)
    ev = evaluate_model(model, dataset, batch_size=args.batch_size, progress=True)
    rows = [(c, ev.num_gt[c], ev.ap["all-point"][c], ev.ap["voc07"][c]) for c in ev.class_names]
    width = max(len(c) for c in ev.class_names)
    print(f"{'class':<{width}}  {'GT':>5}  {'AP':>7}  {'AP07':>7}")
    for c, n, ap, ap07 in rows:
        print(f"{c:<{width}}  {n:>5}  {ap:>7.4f}  {ap07:>7.4f}")
    print(f"{'mAP':<{width}}  {sum(ev.num_gt.values()):>5}  {ev.map('all-point'):>7.4f}  "
          f"{ev.map('voc07'):>7.4f}")
    if args.json:
        print(json.dumps({"map": ev.map("all-point"), "map_voc07": ev.map("voc07"),
                          "ap": ev.ap["all-point"], "images": len(dataset)}))
    return 0

def _print_row(row: dict) -> None:
    width = max(len(k) for k in row)
    for key, value in row.items():
        if isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = "-" if value is None else str(value)
        print(f"{key:<{width}}  {text}")

def measure(args: argparse.Namespace) -> int:
    """One complete measurement row of the checkpoint (fp32), or of its ``int8-ptq`` variant
    (``--int8``, calibrated on the train split), through the engine the suite uses."""
    import dataclasses

    from navya._io import atomic_write_text
    from navya.bench import Bench, BenchSettings, load_workload
    from navya.reporting.rows import append_csv
    from navya.reporting.tables import markdown_table

    path = Path(args.checkpoint)
    if not path.is_file():
        hint = ""
        if path.resolve() == DEFAULT_CHECKPOINT.resolve():
            hint = (" (the default checkpoint has not been trained yet: write it with "
                    f"`navya train --data DIR --out {DEFAULT_CHECKPOINT}`, or pass --checkpoint)")
        raise CLIError(f"{path}: checkpoint file not found{hint}")
    workload = load_workload(path, args.data, split=args.split, eval_images=args.eval_images,
                             train_split="train" if args.int8 else None,
                             size_policy=args.size_policy)
    if args.int8 and workload.train_dataset is None:
        raise CLIError("; ".join(workload.notes) or f"{args.data}: no train split to calibrate on")
    settings = BenchSettings(threads=args.threads, rounds=args.rounds, batch_size=args.batch_size,
                             rss=not args.no_rss, progress=True)
    variant = "int8-ptq" if args.int8 else "fp32"
    result = Bench(workload, settings).measurement(variant)
    if args.name:
        result = dataclasses.replace(result, name=args.name)
    _print_row(result.to_row())
    if args.csv:
        append_csv(args.csv, [result])
        print(f"appended 1 row to {args.csv}")
    if args.markdown:
        atomic_write_text(args.markdown, markdown_table([result]))
        print(f"wrote {args.markdown}")
    return 0

def gate_power(args: argparse.Namespace) -> int:
    """The speed gate's detection and false-alarm rates (navya.power), written to --out."""
    from navya.bench import SPEED_CONFIRM_RUNS
    from navya.power import false_alarm_table, read_power_csv, run_power_study, write_power
    from navya.runtime import machine_key, machine_slug

    out = Path(args.out)
    key = machine_key(1)
    if args.family is None:  # the default run's, as the suite counts them
        from navya.power import suite_family_size

        args.family, n_cases = suite_family_size(".")
        print(f"family: {args.family} speed checks ({n_cases} cases of the default "
              "`pytest benchmarks/` run here)")
    if args.report_only:
        cells = read_power_csv(out / "power.csv")
    else:
        cells = run_power_study(args.checkpoint, args.data, out / "baseline",
                                variant=args.variant, baseline_runs=args.baseline_runs,
                                family_size=args.family, speed_rounds=args.speed_rounds,
                                progress=print)
    fa_path = Path(args.false_alarms_from) if args.false_alarms_from else None
    fa_rows = false_alarm_table(fa_path, args.family) if fa_path and fa_path.exists() else []
    header = [f"Machine: {key['cpu_model']}, {key['cores']} cores, ISA "
              f"{' '.join(key['isa'])}, torch {key['torch_version']} ({machine_slug(key)}).",
              f"Command: `navya gate-power --data {args.data} --variant {args.variant} "
              f"--baseline-runs {args.baseline_runs} --family {args.family} --speed-rounds "
              f"{args.speed_rounds}" + (f" --false-alarms-from {fa_path}" if fa_path else "")
              + "`.",
              f"Each trial is one gate check: one fresh worker pinned to one core times "
              f"{args.speed_rounds} ABBA pairs of each figure (network cells: the variant's "
              f"speedup over fp32 and its A/B against its stored build; post-processing "
              f"cells: t(fp32)/t(yardstick) and t(fp32 network)/t(fp32 end to end)); a figure "
              f"outside its tolerance is confirmed by {SPEED_CONFIRM_RUNS - 1} more runs and "
              f"judged on the median of {SPEED_CONFIRM_RUNS}. Baseline: {args.baseline_runs} "
              f"unchanged runs; tolerances set for {args.family} speed figures a run.",
              *args.note]
    for path in write_power(out, cells, fa_rows, header):
        print(f"wrote {path}")
    return 0

def sweep(args: argparse.Namespace) -> int:
    import torch

    from navya.analysis.sweep import plot_sweep, ratios_from_percent, sweep, write_sweep_csv
    from navya.compress.base import CompressContext
    from navya.models import load_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    ratios = ratios_from_percent(args.ratios)  # percents on the command line, fractions in the API
    model, ckpt = load_checkpoint(args.checkpoint)
    val = _load_dataset(args.data, args.split, class_names=ckpt.class_names or None,
                        limit=args.limit, args=args, decode_size=model.image_size)
    train_set = None
    if "l1-structured" in methods and args.train_split:
        train_set = _load_dataset(args.data, args.train_split, class_names=val.class_names,
                                  args=args, decode_size=model.image_size)
    context = CompressContext(train_dataset=train_set, progress=True, seed=args.seed)
    structured = {} if args.finetune_iters is None else {"finetune_iters": args.finetune_iters}
    rows = []
    for method in methods:
        rows += sweep(model, val, method=method, ratios=ratios, context=context, progress=True,
                      config_overrides=structured if method == "l1-structured" else None)
    print(f"{'method':<20} {'pruning %':>9} {'mAP %':>7} {'drop':>6} {'sparsity %':>10} "
          f"{'MMACs':>8}")
    for r in rows:
        print(f"{r.method:<20} {100 * r.ratio:>9g} {100 * r.map:>7.2f} {r.drop_points:>6.2f} "
              f"{100 * r.sparsity:>10.2f} {r.macs / 1e6:>8.1f}")
    out = Path(args.out)
    write_sweep_csv(rows, out.with_suffix(".csv"))
    plot_sweep(rows, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.png')}")
    return 0

def sensitivity(args: argparse.Namespace) -> int:
    import math

    import torch

    from navya.analysis.sensitivity import (
        keep_most_sensitive,
        layer_sensitivity,
        plot_sensitivity,
        write_sensitivity_csv,
    )
    from navya.compress.quantize import PTQConfig, sensitivity_blocks
    from navya.models import load_checkpoint

    # a bad engine, observer or image count fails here, before any work
    config = PTQConfig(engine=args.engine, activation_observer=args.observer,
                       calibration_images=args.calibration_images)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, ckpt = load_checkpoint(args.checkpoint)
    valid = sensitivity_blocks(model)
    blocks = None
    if args.blocks is not None:
        blocks = list(dict.fromkeys(b.strip() for b in args.blocks.split(",") if b.strip()))
        if not blocks:
            raise CLIError(f"--blocks names no block; valid blocks: {', '.join(valid)}")
    count = len(valid if blocks is None else blocks)
    if args.keep is not None and not 0 <= args.keep <= count:
        raise CLIError(f"--keep {args.keep}: must be between 0 and the {count} analysed blocks")
    val = _load_dataset(args.data, args.split, class_names=ckpt.class_names or None,
                        limit=args.eval_images, args=args, decode_size=model.image_size)
    calib = _load_dataset(args.data, args.calibration_split, class_names=val.class_names,
                          args=args, decode_size=model.image_size)
    # layer_sensitivity checks the block names (the error lists the valid ones)
    rows = layer_sensitivity(model, val, calib, blocks=blocks, config=config, progress=True)
    width = max(len("block"), *(len(r.block) for r in rows))
    print(f"fp32 mAP {100 * rows[0].map_fp32:.2f}% on {len(val)} {args.split} images; "
          f"{args.observer} observers, {args.engine} engine")
    print(f"{'rank':>4}  {'block':<{width}}  {'drop':>7}  {'mAP %':>7}")
    for rank, r in enumerate(rows, 1):
        drop = "nan" if math.isnan(r.drop_points) else f"{r.drop_points:.2f}"
        print(f"{rank:>4}  {r.block:<{width}}  {drop:>7}  {100 * r.map_quant_block_only:>7.2f}")
    out = Path(args.out)
    csv_path = write_sensitivity_csv(rows, out / "sensitivity.csv")
    png_path = plot_sensitivity(rows, out / "sensitivity.png")
    print(f"wrote {csv_path} and {png_path}")
    if args.keep is not None:
        print(f"PTQConfig(keep_float={keep_most_sensitive(rows, args.keep)!r})")
    return 0

def report(args: argparse.Namespace) -> int:
    from navya.reporting.page import ReportError, report_from_dir

    try:
        paths = report_from_dir(args.dir)
    except ReportError as exc:
        raise CLIError(str(exc)) from None
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0

def merge(args: argparse.Namespace) -> int:
    """Exit 0: every case of every shard passed; 1: a case failed or a shard is missing or
    incomplete; 2 (a MergeError): the folders are not shards of one run."""
    from navya.sharding import merge_runs

    result = merge_runs(args.dirs, args.out, history=not args.no_history)
    print("wrote " + ", ".join(str(p) for p in result.paths))
    if result.incomplete:
        print(f"INCOMPLETE: {result.incomplete}")
    if result.failing_cases:
        print(f"FAILED: {', '.join(result.failing_cases)}")
    print("merged verdict: " + ("FAIL" if result.failed else "PASS"))
    return 1 if result.failed else 0


def data_check(args: argparse.Namespace) -> int:
    from navya._io import atomic_write_text
    from navya.data.check import check_voc, collect_class_names

    named = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    if named and args.write_classes:
        raise CLIError("--classes names the list to check against, --write-classes writes "
                       "one from the annotations: give one of them")
    report = check_voc(args.dir, [args.split] if args.split else None, class_names=named)
    if args.write_classes:
        if report.voc_dir is None:
            raise CLIError(f"{args.dir}: no VOC folder to write classes.txt into")
        path = report.voc_dir / "classes.txt"
        if path.exists() and not args.force:
            raise CLIError(f"{path} exists: not overwritten (pass --force to replace it)")
        names = collect_class_names(report.voc_dir)
        atomic_write_text(path, "".join(f"{n}\n" for n in names))
        print(f"wrote {path}: {', '.join(names)}", file=sys.stderr)
        report = check_voc(args.dir, [args.split] if args.split else None)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0 if report.usable else 1

def data_split(args: argparse.Namespace) -> int:
    from navya.data.check import write_split

    counts = write_split(args.dir, args.val, seed=args.seed, force=args.force)
    print(", ".join(f"{k} {v} images" for k, v in counts.items()))
    return 0

def import_tf_od_api(args: argparse.Namespace) -> int:
    from navya.models.tfod import import_tf_od_api

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if (classes is None) == (args.label_map is None):
        raise CLIError("give the class names (--classes person,...) or --label-map FILE")
    t0 = time.perf_counter()
    model = import_tf_od_api(args.graph, classes, label_map=args.label_map,
                             source_package=args.source_package)
    return _write_import(model, args.out, t0)

def _write_import(model, out: str, t0: float, what: str = "") -> int:
    """Save an imported detector and say what was written."""
    from navya.models.tfod import save_imported

    save_imported(model, out, {"command": " ".join(sys.argv)})
    src = model.import_meta["source"]
    print(f"wrote {out}: {model.arch}{what}, {model.image_size}x{model.image_size}, "
          f"{model.num_classes - 1} class(es) {', '.join(model.import_meta['class_names'])}, "
          f"{model.anchors.shape[0]} anchors, from {src['file']} (sha256 {src['sha256'][:12]}...)"
          f" in {time.perf_counter() - t0:.1f} s")
    return 0

def import_torchvision(args: argparse.Namespace) -> int:
    from navya.models.tvssd import import_torchvision_ssdlite

    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    t0 = time.perf_counter()
    model = import_torchvision_ssdlite(args.state_dict, classes)
    tail = "reduced" if model.import_meta["source"]["reduced_tail"] else "full"
    return _write_import(model, args.out, t0, f" ({tail} tail)")

def history_check(args: argparse.Namespace) -> int:
    from navya.history import check_history

    judgements, paths = check_history(args.folder)
    if not paths:
        print(f"no saved pytest-benchmark run under {args.folder}: nothing to check "
              "(`pytest benchmarks/ --benchmark-autosave` saves one)")
        return 0
    print(f"newest run {paths[-1]}, against {min(len(paths) - 1, 10)} previous run(s):")
    for j in judgements:
        print("  " + j.line())
    alarms = [j for j in judgements if j.alarm]
    if alarms:
        print(f"{len(alarms)} figure(s) slower than their history allows: "
              + ", ".join(f"{k[0]} {k[2]}" for k in (j.key for j in alarms)))
    return 1 if alarms and args.fail else 0

def doctor(args: argparse.Namespace) -> int:
    from navya.doctor import doctor

    print(doctor(Path(args.budgets), Path(args.baselines), as_json=args.json))
    return 0
