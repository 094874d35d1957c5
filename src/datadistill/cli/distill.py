"""``distill``, ``evaluate``, ``test-model``, ``import`` and ``report``: a synthetic set from learning to
its evaluation and report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from datadistill.cli.base import data_options, fmt_ratio, init_help, main, models_list, parse_method_args
from datadistill.cli.ranking import score_options
from datadistill.config import EVAL_PROTOCOLS, TRACKERS


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of settings (flags override it).")
@click.option("--dataset", help="Dataset name (see `datadistill list`). Default: mnist.")
@click.option("--method", help="Method name (see `datadistill list`). Default: datadam.")
@click.option("--ipc", type=click.INT, help="Images per class. Default: 10.")
@click.option("--init", help=f"Initial synthetic set: {init_help()}. Coreset methods use their own selection. "
              "Default: real.")
@click.option("--iterations", type=click.INT, help="Optimisation steps (outer iterations for dc, dsa, cafe). Default: 1000.")
@click.option("--max-seconds", type=click.FLOAT, help="Wall-clock budget of the optimisation; stops early when spent. Default: none.")
@click.option("--batch-real", type=click.INT, help="Real images per class per step. Default: the method's (256 for dm as main_DM.py, 64 for datadam, 256 for dc/dsa/cafe).")
@click.option("--lr-img", type=click.FLOAT, help="Learning rate of the synthetic images. Default: the method's (1 for dm/datadam, 0.1 for dc/dsa/cafe).")
@click.option("--model", help="Model used to distil (and evaluate). Default: convnet.")
@click.option("--eval-model", help="Model used to evaluate. Default: --model.")
@click.option("--dsa-strategy", help="DSA strategy, e.g. color_crop_cutout_scale_rotate, or none. Default: per dataset.")
@click.option("--num-eval", type=click.INT, help="Networks trained to evaluate (0 skips). Default: 3.")
@click.option("--eval-epochs", type=click.INT, help="Epochs per evaluation network. Default: 300.")
@click.option("--eval-init/--no-eval-init", default=None, help="Also evaluate the initial set.")
@click.option("--eval-protocol", type=click.Choice(EVAL_PROTOCOLS),
              help="ours: --num-eval, --eval-epochs, --dsa-strategy (eval_lr, eval_batch in a config file); paper: the "
                   "method's own networks, epochs, batch, lr and augmentation (docs/faithfulness.md). Default: ours.")
@click.option("--select-every", type=click.INT,
              help="Keep the best iterate, scored every N iterations on a validation split of the training set. Default: 0 (off).")
@click.option("--val-size", type=click.INT, help="Validation images carved from the training set for --select-every. Default: 5000.")
@click.option("--seed", type=click.INT, help="Random seed. Default: 0.")
@click.option("--zca-eps", type=click.FLOAT, help="ZCA-whiten the real set with this eps (saved with the set). Default: no ZCA.")
@click.option("--device", help="auto, cpu, cuda or cuda:N. Default: auto.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder. Default: $DATADISTILL_DATA or ~/.cache/datadistill.")
@data_options(defaults=False)
@click.option("--method-arg", "method_args", multiple=True, metavar="KEY=VALUE",
              help="Method-specific setting, repeatable (e.g. attention_power=4).")
@click.option("--mask-shallow", type=click.FLOAT,
              help="dm, datadam: leave this fraction of the matched layers, shallowest first, out of the loss "
                   "(PAD's idea; dm also needs --method-arg layers=all). Same as --method-arg mask_shallow=RATIO.")
@click.option("--out", type=click.Path(file_okay=True), help="Output folder. Default: runs/DATASET_METHOD_ipcN.")
@click.option("--checkpoint-every", type=click.INT,
              help="Write OUT/checkpoint every N iterations (0 = by time only). Default: 0.")
@click.option("--checkpoint-seconds", type=click.FLOAT,
              help="Write OUT/checkpoint at most S seconds apart (0 = by iteration count only; both 0: only on "
                   "SIGINT/SIGTERM). Default: 60.")
@click.option("--keep-checkpoint/--no-keep-checkpoint", default=None,
              help="Keep OUT/checkpoint after the final files are written (removed by default).")
@click.option("--restart", is_flag=True,
              help="Discard OUT/checkpoint and start afresh (by default a rerun resumes from it).")
@click.option("--log-to", "log_to", multiple=True, type=click.Choice(TRACKERS),
              help="Also log to this experiment tracker (repeatable), under --out: tensorboard (OUT/tensorboard), "
                   "mlflow (OUT/mlruns), wandb (offline, OUT/wandb), csv (OUT/log.csv). Default: none.")
@click.option("--log-grid-every", type=click.INT,
              help="Log the synthetic set's grid to the trackers every N iterations (0: first and last only). "
                   "Default: 100.")
@click.option("--quiet", is_flag=True, help="No progress bars (as `datadistill --quiet distill`).")
def distill(config_file, out, quiet, restart, method_args, mask_shallow, **flags) -> None:
    """Learn a synthetic set, evaluate it and write it with its grids and metrics to --out.

    Rerunning the same command with the same --out resumes from OUT/checkpoint (written every
    --checkpoint-every iterations and at most --checkpoint-seconds apart, and on SIGINT/SIGTERM, which
    stop the run after its current step with exit status 130/143)."""
    from datadistill.api import run_distill
    from datadistill.cli.progress import DistillProgress
    from datadistill.config import build_config

    flags["method_args"] = parse_method_args(method_args) or None
    flags["log_to"] = list(flags["log_to"]) or None  # none given: the YAML's log_to
    if mask_shallow is not None:
        flags["method_args"] = {**(flags["method_args"] or {}), "mask_shallow": mask_shallow}
    config = build_config(config_file, flags)
    from datadistill.data import split_dataset_name

    kind, folder = split_dataset_name(config.dataset)
    name = f"{kind}_{Path(folder).name}" if folder else kind  # imagefolder:/data/pets -> imagefolder_pets
    out_dir = Path(out or f"runs/{name}_{config.method}_ipc{config.ipc}")
    bars = DistillProgress(config, quiet=quiet)  # drawn from the first step: none for a run refused at once
    try:  # messages about resuming and stopping are shown whatever the verbosity (the datadistill.notice log)
        result = run_distill(config, out_dir, restart=restart, **bars.run_options())
    finally:
        bars.close()
    m = result.metrics()
    click.echo(f"distilled {config.dataset} with {config.method}, ipc {config.ipc}, {m['iterations']} iterations "
               f"in {m['distill_seconds']:.1f} s")
    if "accuracy_mean" in m:
        click.echo(f"test accuracy ({config.resolved_eval_model}, {len(m['accuracies'])} models, "
                   f"{m['eval_epochs']} epochs, protocol {m['eval_protocol']}): {m['accuracy_mean']:.2f} ± "
                   f"{m['accuracy_std']:.2f} % (evaluation {m['eval_seconds']:.1f} s)")
    if "selected_iteration" in m:
        click.echo(f"kept iteration {m['selected_iteration']} (best validation accuracy; test set not used to select)")
    if "init_accuracy_mean" in m:
        click.echo(f"initial set accuracy: {m['init_accuracy_mean']:.2f} ± {m['init_accuracy_std']:.2f} %")
    click.echo(f"wrote {out_dir}/synthetic.safetensors, synthetic.png, init.png, metrics.json")
    if config.log_to:
        from datadistill.io.tracking import LOCATIONS

        click.echo("logged to " + ", ".join(f"{name} ({out_dir / LOCATIONS[name]})" for name in config.log_to))



@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--models", "--model", "models", default="convnet", show_default=True,
              help="Comma-separated models to train on the set (cross-architecture), e.g. convnet,alexnet,vgg11,resnet18,lenet,mlp.")
@click.option("--protocol", default="ours", show_default=True,
              help="Evaluation protocol: ours (the defaults below, the same for every method), paper (the set's "
                   "method's own: networks, epochs, batch, lr, augmentation; docs/faithfulness.md) or paper:METHOD. "
                   "The flags below override single settings of either.")
@click.option("--num-eval", type=int, default=None, help="Networks trained per model. Default: 3 (ours).")
@click.option("--eval-epochs", type=int, default=None, help="Epochs per network. Default: 300 (ours).")
@click.option("--eval-lr", type=float, default=None,
              help="Initial lr; given, it replaces the set's learned lr. Default: the learned lr, else the model's default (0.01).")
@click.option("--eval-batch", type=int, default=None, help="Mini-batch size. Default: 256 (ours).")
@click.option("--dsa-strategy", default=None,
              help="Augmentation: a DSA strategy, dc:OPS for DC's (e.g. dc:crop_scale_rotate) or none. Default: the "
                   "dataset's DSA strategy (ours).")
@click.option("--vectorise/--no-vectorise", default=None,
              help="Train the networks of one model together (torch.vmap); BatchNorm models always run one by one. "
                   "Default: on CUDA only (slower than the sequential loop on CPU, docs/benchmarks.md).")
@click.option("--curve-every", type=int, default=0, show_default=True,
              help="Record train/test accuracy every N epochs for learning curves (0 = off; needs --out).")
@click.option("--baseline", "baselines", multiple=True, type=click.Path(),
              help="baseline.json of `datadistill baseline` (repeatable): adds the cost table for its model. With "
                   "--scores also Acc(real, hard); a new folder: the baseline is trained there and kept.")
@click.option("--save-models", type=click.Path(file_okay=False), default=None,
              help="Save every trained network here (`datadistill test-model` tests one).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write evaluation.json (and curves.json/png) to this folder, e.g. the run folder for `datadistill report`.")
@click.option("--log-to", "log_to", multiple=True, type=click.Choice(TRACKERS),
              help="Also log the results, settings, grid and files to this experiment tracker (repeatable; "
                   "needs --out, under which it writes).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@score_options
def evaluate(file, models, protocol, num_eval, eval_epochs, eval_lr, eval_batch, dsa_strategy, vectorise, curve_every,
             baselines, save_models, out, log_to, seed, device, data_root, as_json, scores, teacher, score_labels,
             lr_grid, select_networks, select_epochs, val_size) -> None:
    """Train fresh networks on a saved synthetic set and test them on the real test set.

    With --scores, also the DD-Ranking scores of the set on the first model (HLR, IOR, LRS, ARS; the
    lr chosen on a validation split of the training set, the test set read once per network)."""
    from datadistill.api import run_evaluate
    from datadistill.cli.progress import EvalBar
    from datadistill.cli.ranking import ScoreBar, echo_scores, ranking_settings

    names = models_list(models)
    if curve_every and out is None:
        raise click.BadParameter("learning curves are written to --out: give --out DIR", param_hint="--curve-every")
    if teacher is not None and not scores:
        raise click.BadParameter("the teacher labels R for the scores: give --scores too", param_hint="--teacher")
    ranking = ranking_settings(scores, lr_grid, eval_lr, labels=score_labels, select_networks=select_networks,
                               select_epochs=select_epochs, val_size=val_size)
    bar, score_bar = EvalBar(list(dict.fromkeys(names)), num_eval, eval_epochs), ScoreBar()
    try:
        result = run_evaluate(file, names, out=out, baselines=baselines, save_models=save_models, data_root=data_root,
                              device=device, seed=seed, protocol=protocol, num_eval=num_eval, epochs=eval_epochs,
                              lr=eval_lr, batch_size=eval_batch, dsa_strategy=dsa_strategy,
                              use_learned_lr=False if eval_lr is not None else None, vectorise=vectorise,
                              curve_every=curve_every, on_epoch=lambda p: bar(p.model, p), log_to=log_to,
                              scores=ranking, teacher=teacher, on_plan=lambda line: click.echo(line, err=True),
                              on_score=score_bar)
    finally:
        bar.close()
        score_bar.close()
    d = result.as_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for line in protocol_lines(d):
        click.echo(line)
    click.echo(f"{'model':<12} {'test accuracy %':>16} {'train accuracy %':>17} {'seconds':>9}  per-network test accuracies")
    for r in d["rows"]:
        click.echo(f"{r['model']:<12} {r['accuracy_mean']:>8.2f} ± {r['accuracy_std']:<5.2f} "
                   f"{r['train_accuracy_mean']:>10.2f} ± {r['train_accuracy_std']:<4.2f} {r['eval_seconds']:>9.1f}  "
                   + ", ".join(f"{a:.2f}" for a in r["accuracies"]))
    classes = d.get("class_names") or []
    if len(classes) <= 2:  # two-class (medical) data: accuracy alone hides the minority class
        for r in d["rows"]:
            if "balanced_accuracy_mean" in r:
                per = ", ".join(f"{n} {a:.2f}" for n, a in zip(classes, r["per_class_accuracy_mean"]) if a is not None)
                click.echo(f"{r['model']:<12} balanced accuracy {r['balanced_accuracy_mean']:.2f} ± "
                           f"{r['balanced_accuracy_std']:.2f} %; per class: {per}")
    for c in d["cost"]:
        click.echo(f"{c['model']} against the whole data ({c['baseline_accuracy']:.2f} %): accuracy gap "
                   f"{c['accuracy_gap']:.2f} points, training {fmt_ratio(c['time_speedup'])} faster "
                   f"({c['synthetic_seconds']:.1f} s vs {c['baseline_seconds']:.1f} s), "
                   f"{fmt_ratio(c['flops_ratio'])} fewer training FLOPs")
    if d.get("ranking_scores"):
        echo_scores(d["ranking_scores"])
    if out:
        click.echo(f"wrote {Path(out) / 'evaluation.json'}")


def protocol_lines(d: dict) -> list[str]:
    """The caption of `evaluate`'s table: per architecture (one line when they share it), the protocol
    and what it trained with (networks, epochs, batch, lr, augmentation), and the settings given
    instead of a paper protocol's."""
    changed = ", ".join(d.get("protocol_overrides") or [])
    lines: dict[str, list[str]] = {}
    for r in d["rows"]:
        lr = f"{r['lr']:g}" if r.get("lr") is not None else "?"
        text = (f"{len(r['accuracies'])} networks × {r['epochs']} epochs, batch {r['batch_size']}, lr {lr} "
                f"(÷10 at half), SGD momentum 0.9, weight decay 5e-4, augmentation {r['augmentation']}")
        if changed and r["protocol"] != "ours":
            text += f"; given instead of the protocol's: {changed}"
        lines.setdefault(f"protocol {r['protocol']}{{}}: {text}", []).append(r["model"])
    if len(lines) == 1:
        return [next(iter(lines)).format("")]
    return [line.format(f" ({', '.join(models)})") for line, models in lines.items()]


@main.command("test-model")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def test_model(file, device, data_root, as_json) -> None:
    """Test a network saved by `evaluate --save-models` on its dataset's real test set."""
    from datadistill.api import evaluate_saved_model

    r = evaluate_saved_model(file, data_root=data_root, device=device)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"{r['model']} on the {r['dataset']} test set ({r['test_images']} images): accuracy {r['accuracy']:.2f} %, "
               f"balanced accuracy {r['balanced_accuracy']:.2f} %")
    click.echo("per class: " + ", ".join(f"{k} {v:.1f}" for k, v in r["per_class_accuracy"].items() if v is not None))


@main.command("import")
@click.argument("path", type=click.Path())
@click.option("--dataset", required=True, help="Dataset the set was distilled from (checks shapes, gives mean/std).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="datadistill file to write (.safetensors).")
@click.option("--experiment", type=int, default=0, show_default=True, help="VICO files: which experiment's set.")
@click.option("--zca-eps", type=float, default=None, help="The run used ZCA with this eps (refitted on the training set).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
def import_cmd(path, dataset, out, experiment, zca_eps, data_root) -> None:
    """Convert a small set made elsewhere into a datadistill file: the reference code's files (VICO res_*.pt;
    MTT/DATM/PAD images_best.pt, labels_best.pt, lr_best.pt; read with weights_only, nothing is unpickled), an
    image folder (one sub-folder per class), a saved Hugging Face dataset, or an `export`ed .npz."""
    from datadistill.api import run_import

    syn = run_import(path, dataset, out, experiment=experiment, zca_eps=zca_eps, data_root=data_root)
    lr = f", learned lr {syn.learned_lr:.4g}" if syn.learned_lr is not None else ""
    click.echo(f"imported {len(syn)} images ({syn.label_kind} labels{lr}) from {path}; wrote {out}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="HTML file. Default: RUN_DIR/report.html.")
def report(run_dir, out) -> None:
    """Write one self-contained HTML page for a run folder: config, grids, loss, evaluation, curves, cost."""
    from datadistill.io.report import write_report

    click.echo(f"wrote {write_report(run_dir, out)}")
