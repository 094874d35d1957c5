"""``experts``, ``scores`` and ``baseline``: commands that train networks on the real set."""

from __future__ import annotations

from pathlib import Path

import click

from datadistill.cli.base import data_options, load_mapping, main


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
@click.option("--optimizer", type=click.Choice(["sgd", "gsam"]),
              help="sgd (MTT's buffer.py) or gsam (DATM/PAD's FTD experts: SGD wrapped in GSAM). Default: sgd.")
@click.option("--rho", type=click.FLOAT, help="GSAM perturbation radius. Default: 0.01 (DATM/PAD).")
@click.option("--alpha", type=click.FLOAT, help="GSAM surrogate-gap weight. Default: 0.3 (DATM/PAD).")
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@data_options(defaults=False)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder of the trajectories (resumed if it exists).")
def experts(config_file, scores_file, device, data_root, out, **flags) -> None:
    """Train expert networks on the real set and save their parameters after every epoch (MTT family)."""
    from datadistill.api import run_experts
    from datadistill.cli.progress import Bar

    values = {**load_mapping(config_file), **{k: v for k, v in flags.items() if v is not None}}
    if scores_file:
        values["curriculum"] = {**(values.get("curriculum") or {}), "scores_file": scores_file}
    bar, size = Bar(None, "experts", "epoch"), {}

    def start(experts: int, epochs: int) -> None:
        bar.total = experts * epochs
        size.update(experts=experts, epochs=epochs)

    def progress(k: int, epoch: int, acc: float) -> None:
        bar.goto(k * size["epochs"] + epoch, f"expert {k + 1}/{size['experts']}",
                 f"epoch {epoch}/{size['epochs']}, test {acc:.1f}%")

    try:
        root = run_experts(values, out, device=device, data_root=data_root, progress=progress, on_start=start)
    finally:
        bar.close()
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
@data_options(defaults=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Scores file (.safetensors).")
def scores(dataset, score_name, model, num_networks, epochs, seed, zca_eps, device, data_root, out, image_size, stream,
           num_workers) -> None:
    """Per-sample difficulty scores of the training set (higher = harder) and per-class easy → hard orders."""
    from datadistill.api import run_scores
    from datadistill.cli.progress import Bar

    per = epochs + 1  # a network's epochs, then its scoring pass
    bar = Bar(num_networks * per, f"{score_name} scores", "step")

    def on_epoch(k: int, epoch: int) -> None:
        bar.goto(k * per + epoch, f"{score_name} network {k + 1}/{num_networks}",
                 f"epoch {epoch}/{epochs}" if epoch < epochs else "scoring")

    try:
        result = run_scores(dataset, score_name, out, model=model, num_networks=num_networks, epochs=epochs, seed=seed,
                            zca_eps=zca_eps, device=device, data_root=data_root, image_size=image_size, stream=stream,
                            num_workers=num_workers, on_epoch=on_epoch,
                            progress=lambda k, mean: bar.goto((k + 1) * per, postfix=f"mean score {mean:.4g}"))
    finally:
        bar.close()
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
@data_options(defaults=True)
@click.option("--out", required=True, type=click.Path(file_okay=True), help="Folder for baseline.json.")
def baseline(dataset, device, data_root, out, image_size, stream, num_workers, **settings) -> None:
    """Train one network on the whole real training set: test accuracy, training time and FLOPs."""
    from datadistill.api import run_baseline
    from datadistill.cli.progress import Bar

    bar = Bar(settings["epochs"], f"baseline {settings['model']} {dataset}", "epoch")

    def progress(epoch, test_acc, train_acc):
        shown = f", test {test_acc:.1f}%" if test_acc is not None else ""
        bar.goto(epoch, postfix=f"train {train_acc:.1f}%{shown}")

    try:
        r = run_baseline(dataset, out, device=device, data_root=data_root, progress=progress, image_size=image_size,
                         stream=stream, num_workers=num_workers, **settings)
    finally:
        bar.close()
    click.echo(f"{dataset} whole data ({r.train_images} images), {r.model}, {r.epochs} epochs: test accuracy "
               f"{r.accuracy:.2f} %, training {r.train_seconds:.1f} s, {r.forward_flops / 1e6:.1f} MFLOP per "
               f"forward pass, {r.train_flops / 1e12:.2f} TFLOP in training; wrote {Path(out) / 'baseline.json'}")
