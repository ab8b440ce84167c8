"""The ``navya`` command: ``data synth``, ``train``, ``evaluate``, ``measure``.

Argument parsing happens only in :func:`main`; nothing runs at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "ssdlite_mobilenet_v2.pt"


class CLIError(Exception):
    """An error to print as one line and exit 2."""


def _data_synth(args: argparse.Namespace) -> int:
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


def _load_dataset(data: str, split: str, class_names=None, limit=None):
    from navya.data.voc import VOCDataset

    return VOCDataset(data, split=split, class_names=class_names, limit=limit)


def _train(args: argparse.Namespace) -> int:
    from navya.data.synthetic import read_fingerprint
    from navya.metrics.evaluate import evaluate_model
    from navya.models import build_model, load_checkpoint, save_checkpoint
    from navya.train import TrainConfig, train

    train_set = _load_dataset(args.data, args.split, limit=args.limit)
    names = train_set.class_names
    if args.init:
        model, ckpt = load_checkpoint(args.init)
        if tuple(ckpt.class_names) != tuple(names):
            raise CLIError(f"{args.init}: classes {ckpt.class_names} differ from the data's {names}")
    else:
        model = build_model(args.arch, len(names) + 1, width_mult=args.width,
                            image_size=args.image_size)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                         lr=args.lr, weight_decay=args.weight_decay, amp=args.amp,
                         seed=args.seed, max_iters=args.max_iters)
    state = Path(args.out).with_suffix(".state.pt")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = train(model, train_set, config, state_path=state, resume=args.resume)
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
    }
    if args.val_split:
        val = _load_dataset(args.data, args.val_split, class_names=names)
        ev = evaluate_model(model, val, progress=True)
        meta["val"] = {"split": args.val_split, "images": len(val),
                       "map": ev.map("all-point"), "map_voc07": ev.map("voc07"),
                       "ap": ev.ap["all-point"]}
        print(f"val mAP@0.5 (all-point) {ev.map('all-point'):.4f}")
    save_checkpoint(args.out, model, meta)
    print(f"saved {args.out} ({result.iterations} iterations, {result.seconds / 60:.1f} min)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from navya.metrics.evaluate import evaluate_model
    from navya.models import load_checkpoint

    model, ckpt = load_checkpoint(args.checkpoint)
    dataset = _load_dataset(args.data, args.split, class_names=ckpt.class_names or None,
                            limit=args.limit)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="navya", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="data sets").add_subparsers(dest="data_command",
                                                                   required=True)
    s = data.add_parser("synth", help="write the deterministic synthetic VOC data set")
    s.add_argument("--out", required=True, help="folder to write VOCdevkit/ into")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=320)
    s.add_argument("--train", type=int, default=3000)
    s.add_argument("--val", type=int, default=500)
    s.add_argument("--test", type=int, default=500)
    s.add_argument("--workers", type=int, default=None)
    s.set_defaults(func=_data_synth)

    t = sub.add_parser("train", help="train (or fine-tune) a detector")
    t.add_argument("--data", required=True, help="VOC root (folder holding VOCdevkit/)")
    t.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    t.add_argument("--arch", default="ssdlite_mobilenet_v2")
    t.add_argument("--width", type=float, default=1.0)
    t.add_argument("--image-size", type=int, default=320)
    t.add_argument("--split", default="train")
    t.add_argument("--val-split", default="val", help="split to score at the end ('' for none)")
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--amp", default="none", choices=["none", "bf16"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-iters", type=int, default=None)
    t.add_argument("--limit", type=int, default=None, help="use the first N training images")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--init", default=None, help="start from this checkpoint (fine-tune)")
    t.add_argument("--resume", action="store_true", help="continue from <out>.state.pt")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="VOC mAP and per-class AP of a checkpoint")
    e.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="val")
    e.add_argument("--limit", type=int, default=None)
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--json", action="store_true", help="also print the result as JSON")
    e.set_defaults(func=_evaluate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from navya.data.voc import VOCFormatError
    from navya.models.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, VOCFormatError, CheckpointError, FileNotFoundError, KeyError,
            ValueError) as exc:
        print(f"navya: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
