"""``compare``, ``nas``, ``continual`` and ``federated``: the experiments over many runs."""

from __future__ import annotations

import sys

import click

from datadistill.cli.base import data_options, main


@main.command()
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False), help="YAML grid (see configs/compare/).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (overrides the config's out).")
@click.option("--no-run", "no_run", is_flag=True,
              help="Run no cell: tabulate and plot the finished ones, the rest shown as not run yet.")
def compare(config_file, out, no_run) -> None:
    """Run a grid of methods × IPC × init × seeds; write results.csv/json/md and plots. Finished cells are reused."""
    from datadistill.cli.progress import CompareProgress
    from datadistill.experiments.compare import CompareSettings, load_compare, run_compare

    settings = CompareSettings.build(config_file)
    bars = CompareProgress(load_compare(settings).cells)
    try:
        result = run_compare(settings, out, progress=bars.cell, run=not no_run, run_options=bars.run_options)
    finally:
        bars.close()
    click.echo(f"wrote {result.out}/results.csv, results.json, results.md, accuracy_vs_ipc.png, accuracy_vs_time.png")
    if not result.ok:
        for row in result.failures:
            click.echo(f"error: cell {row.get('label')} ipc {row.get('ipc')} seed {row.get('seed')} failed: {row.get('error')}",
                       err=True)
        sys.exit(1)


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
@click.option("--workers", type=click.INT, default=2, show_default=True, help="Worker processes training candidates (under torchrun: each rank is one).")
@click.option("--seed", type=click.INT, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for nas.json/csv/md/png.")
def nas(synthetic, space, out, **flags) -> None:
    """Neural architecture search proxy: rank a space of architectures on the synthetic set and on real data."""
    from datadistill.cli.progress import Bar
    from datadistill.experiments.nas import NASSettings, run_nas

    bar, counts = Bar(None, "nas", "candidate"), {}

    def progress(phase, done, total, row):
        counts[phase] = done
        bar.total = 2 * total
        bar.goto(sum(counts.values()), f"nas {phase} {done}/{total}",
                 f"{row['name']} validation {row.get(f'{phase}_val_accuracy', float('nan')):.1f}%",
                 skip=row.get("reused", False))

    try:
        r = run_nas(synthetic, space, out, NASSettings.from_mapping(flags), progress=progress)
    finally:
        bar.close()
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
@data_options(defaults=False)
@click.option("--workers", type=click.INT,
              help="Worker processes, one (memory method, class order) pair each (0 or 1 = in this process; "
                   "under torchrun: each rank is one). Default: 1.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output folder (continual.json/csv/md/png); a folder of a run with the same settings is "
                   "resumed.")
def continual(config_file, memory_methods, **flags) -> None:
    """Class-incremental learning with condensed memories: accuracy on all seen classes after each step."""
    from datadistill.cli.progress import Bar
    from datadistill.experiments.continual import ContinualSettings, run_continual

    methods = ",".join(memory_methods) if memory_methods else None
    settings = ContinualSettings.build(config_file, {**flags, "memory_methods": methods})
    bar = Bar(None, "continual", "step")

    def on_step(r, done, total):
        bar.total = total
        bar.goto(done, f"{r.method} order {r.order}",
                 f"step {r.step}/{settings.steps}, accuracy {r.accuracy_mean:.1f}%")

    try:
        result = run_continual(settings, on_step=on_step)
    finally:
        bar.close()
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
@click.option("--workers", type=click.INT, help="Worker processes distilling the clients' sets (under torchrun: each "
                                                  "rank is one). Default: 2.")
@click.option("--seed", type=click.INT, help="Seed of the partition, the clients and the server. Default: 0.")
@click.option("--device", help="auto, cpu, cuda or cuda:N. Default: auto.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for federated.json/csv/md/png.")
def federated(config_file, out, **flags) -> None:
    """One-shot federated learning (FedD3: clients upload distilled sets) against FedAvg: accuracy and bytes."""
    from datadistill.cli.progress import StagedBars
    from datadistill.experiments.federated import FederatedConfig, run_federated

    bars = StagedBars({"fedd3": "FedD3 clients", "server": "FedD3 server", "fedavg": "FedAvg rounds"},
                      {"fedd3": "client", "server": "epoch", "fedavg": "round"})
    try:
        result = run_federated(FederatedConfig.build(config_file, flags), out,
                               on_unit=lambda stage, done, total, reused: bars(stage, done, total, skip=reused))
    finally:
        bars.close()
    click.echo(result.summary["comparison"]["reason"])
    click.echo(f"wrote {out}/federated.json, federated.csv, federated.md, federated.png")
