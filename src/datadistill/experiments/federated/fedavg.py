"""FedAvg (McMahan et al., 2017): for R rounds, a seeded fraction of the clients start from the
global weights, train E local epochs with SGD on their images and upload their weights; the server
replaces the global weights by the average weighted by the clients' image counts
(:func:`weighted_average`). A plain simulation in this process, the clients one after another
(:func:`run_fedavg`). (Flower's ``flwr.simulation`` was tried for this and gave bitwise the same
weights, but each run spent 40–60 s starting Ray actors that import torch on the project's 2-core
machine, against well under a second for the loop.)

Seeds (:mod:`datadistill.experiments.seeds`): the clients of round r are drawn from
``derived_rng(seed, SELECTION_STREAM, r)``, client i trains round r with
``derived_seed(seed, LOCAL_STREAM, r, i)``, the initial global network is built with
``derived_seed(seed, INIT_STREAM)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from datadistill.data import DatasetSpec, LabelledImages
from datadistill.errors import ConfigError
from datadistill.experiments.federated.payload import model_state, upload_bytes
from datadistill.experiments.federated.settings import (INIT_STREAM, LOCAL_STREAM, SELECTION_STREAM, Progress,
                                                         UnitProgress)
from datadistill.experiments.seeds import derived_rng, derived_seed
from datadistill.training import TrainRecipe, fit_network, holds_recipe
from datadistill.units import run_units


RoundHook = Callable[[int, float, dict[str, Any], dict[str, torch.Tensor]], None]


def weighted_average(states: Sequence[Mapping[str, torch.Tensor]], counts: Sequence[int]) -> dict[str, torch.Tensor]:
    """FedAvg's server step: Σ_k (n_k / n) · w_k over the clients' states, n = Σ_k n_k.

    Computed in float32, client by client in the given order (float sums depend on the order).

    Args:
        states: one mapping name → float32 tensor per client, all with the same names and shapes.
        counts: n_k, the client's training images (> 0).

    Raises:
        ConfigError: no states, a count per state missing, a count ≤ 0, or mismatched names or shapes.
    """
    if not states or len(states) != len(counts):
        raise ConfigError(f"weighted_average needs one count per state: got {len(states)} states and "
                          f"{len(counts)} counts")
    if any(int(n) <= 0 for n in counts):
        raise ConfigError(f"weighted_average counts = {list(counts)} are invalid: expected integers > 0")
    keys = list(states[0])
    for s in states[1:]:
        if list(s) != keys or any(tuple(s[k].shape) != tuple(states[0][k].shape) for k in keys):
            raise ConfigError("weighted_average: the client states differ in tensor names or shapes")
    total = sum(int(n) for n in counts)
    factors = [int(n) / total for n in counts]
    out: dict[str, torch.Tensor] = {}
    for state, f in zip(states, factors):
        for k in keys:
            term = state[k].to(torch.float32) * f
            out[k] = term if k not in out else out[k] + term
    return out


LOCAL_RECIPE = TrainRecipe(epochs=1, lr=0.05, batch_size=50, momentum=0.0, weight_decay=0.0, schedule="constant",
                           augmentation="none")
"""McMahan et al.'s client update: plain SGD (momentum 0), constant lr, no augmentation; lr 0.05
because LeNet barely leaves chance level in a first MNIST round at 0.01."""


@holds_recipe("epochs", "lr", "batch_size", "momentum", "weight_decay")
@dataclass(frozen=True)
class LocalTraining:
    """A FedAvg client's local update: ``recipe`` (default :data:`LOCAL_RECIPE`), ``epochs`` passes of
    SGD (``lr``, ``momentum``, ``weight_decay``, fresh optimiser state every round) over its images in
    shuffled mini-batches of ``batch_size``, no augmentation. The flat keys are the recipe's
    (:func:`datadistill.training.holds_recipe`)."""

    recipe: TrainRecipe = LOCAL_RECIPE


def local_train(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: LocalTraining,
                generator: torch.Generator) -> torch.nn.Module:
    """Train ``net`` in place on (images (n, C, H, W) float32, labels (n,) int64) as ``settings`` say
    (:func:`datadistill.training.fit_network`); ``generator`` (CPU) draws the shuffles. Returns ``net``."""
    fit_network(net, (images, labels), settings.recipe, generator)
    return net


def build_net(model: str, spec: DatasetSpec, seed: int) -> torch.nn.Module:
    """A freshly initialised ``model`` for ``spec``, initialised from ``seed`` (torch's global
    generator is left as it was)."""
    from datadistill.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(model, spec.channels, spec.num_classes, spec.image_size)


def client_update(global_state: Mapping[str, torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
                  model: str, spec: DatasetSpec, settings: LocalTraining, seed: int,
                  device: str = "cpu") -> dict[str, torch.Tensor]:
    """One FedAvg client round: load the global state into a fresh ``model``, :func:`local_train`
    with a generator seeded by ``seed``, return :func:`model_state` (float32, CPU)."""
    from datadistill.runtime import make_generator

    net = build_net(model, spec, 0).to(device)
    net.load_state_dict(dict(global_state), strict=False)
    local_train(net, images.to(device), labels.to(device), settings, make_generator(seed))
    return model_state(net)


def select_clients(clients: int, fraction: float, seed: int, round_: int) -> list[int]:
    """The clients of FedAvg round ``round_``: max(1, ⌊fraction·N⌋) distinct clients drawn with
    ``derived_rng(seed, SELECTION_STREAM, round_)``, sorted."""
    m = max(1, int(fraction * clients))
    rng = derived_rng(seed, SELECTION_STREAM, round_)
    return sorted(int(i) for i in rng.choice(clients, size=m, replace=False))


def local_seed(seed: int, round_: int, client: int) -> int:
    """The seed of ``client``'s local-training generator in FedAvg round ``round_`` of a run seeded ``seed``:
    ``derived_seed(seed, LOCAL_STREAM, round_, client)``."""
    return derived_seed(seed, LOCAL_STREAM, round_, client)


def run_fedavg(train: LabelledImages, test: LabelledImages, spec: DatasetSpec, parts: Sequence[torch.Tensor], *,
               model: str, rounds: int, fraction: float, settings: LocalTraining, seed: int = 0,
               device: str = "cpu", initial_state: Mapping[str, torch.Tensor] | None = None,
               progress: Progress | None = None, resume_from: Mapping[str, Any] | None = None,
               on_round: RoundHook | None = None, on_unit: UnitProgress | None = None) -> dict[str, Any]:
    """FedAvg on the clients ``parts`` (index tensors into ``train``), tested on ``test`` after every round.

    Every round: :func:`select_clients`, :func:`client_update` for each selected client (one after
    another in one process; under torchrun shared out among the ranks by
    :func:`datadistill.units.run_units`), :func:`weighted_average` by their image counts, then the global model
    is tested. The global model starts from ``initial_state``, else from a network initialised with
    a seed derived from ``seed``.

    Args:
        train, test: the real training set (the clients' images) and the real test set.
        model: registered architecture.
        rounds: R ≥ 1; fraction: the share of clients selected per round, in (0, 1].
        settings: the clients' local SGD.
        device: where the clients train and the global model is tested (``cpu`` or ``cuda[:N]``).
        initial_state: float32 tensors by ``state_dict`` name (:func:`model_state`) to start from.
        resume_from: the run so far, to go on from: ``rows`` of rounds 1 … r, ``initial_accuracy``
            and ``state`` (the global weights after round r); rounds r + 1 … R are then the ones an
            uninterrupted run would give (each round depends on the previous ones only through the
            global weights; its clients and seeds derive from ``seed`` and its number).
        on_round: called ``(round, initial accuracy, row, global weights)`` after every round (to
            keep them).
        on_unit: called ``("fedavg", round, rounds, False)`` after every round (progress displays).

    Returns:
        ``rows`` (one per round: ``round``, ``clients``, ``accuracy`` %, ``bytes_uploaded``,
        ``cumulative_bytes_uploaded``, ``bytes_downloaded``, …, ``round_seconds``,
        ``cumulative_seconds``), ``initial_accuracy`` %, ``bytes_per_client_round`` B,
        ``final_state`` (name → float32 tensor), ``wall_seconds``. Round seconds exclude testing.
    """
    from datadistill.evaluation import accuracy

    net = build_net(model, spec, derived_seed(seed, INIT_STREAM)).to(device)
    if initial_state is not None:
        net.load_state_dict(dict(initial_state), strict=False)
    state = model_state(net)
    per_client = upload_bytes(state)
    counts = [int(p.numel()) for p in parts]
    rows: list[dict[str, Any]] = [dict(r) for r in resume_from["rows"]] if resume_from else []
    clock = {"start": time.perf_counter(), "eval": 0.0, "before": rows[-1]["cumulative_seconds"] if rows else 0.0}

    def evaluate(round_: int, new_state: Mapping[str, torch.Tensor], chosen: list[int]) -> float:
        t = time.perf_counter()
        net.load_state_dict(dict(new_state), strict=False)
        acc = accuracy(net, test, torch.device(device))
        clock["eval"] += time.perf_counter() - t
        if round_ == 0:
            return acc
        now = time.perf_counter() - clock["start"] - clock["eval"] + clock["before"]
        up = per_client * len(chosen)
        rows.append({"round": round_, "clients": chosen, "accuracy": acc, "bytes_uploaded": up,
                     "cumulative_bytes_uploaded": up + (rows[-1]["cumulative_bytes_uploaded"] if rows else 0),
                     "bytes_downloaded": up,
                     "cumulative_bytes_downloaded": up + (rows[-1]["cumulative_bytes_downloaded"] if rows else 0),
                     "round_seconds": now - (rows[-1]["cumulative_seconds"] if rows else 0.0),
                     "cumulative_seconds": now})
        if on_round is not None:  # kept before it is reported
            on_round(round_, clock["initial"], rows[-1], dict(new_state))
        if on_unit is not None:
            on_unit("fedavg", round_, rounds, False)
        if progress:
            progress("fedavg", f"round {round_}/{rounds}: {len(chosen)} clients, test accuracy {acc:.2f} %, "
                               f"{rows[-1]['cumulative_bytes_uploaded']:,} B uploaded so far")
        return acc

    if resume_from:
        initial, state = resume_from["initial_accuracy"], dict(resume_from["state"])
    else:
        initial = evaluate(0, state, [])
    clock["initial"] = initial
    for r in range(len(rows) + 1, rounds + 1):
        chosen = select_clients(len(parts), fraction, seed, r)
        updates = run_units(len(chosen), lambda j: client_update(  # under torchrun the ranks share the clients
            state, train.images[parts[chosen[j]]], train.labels[parts[chosen[j]]], model, spec, settings,
            local_seed(seed, r, chosen[j]), device))
        state = weighted_average(updates, [counts[i] for i in chosen])
        evaluate(r, state, chosen)
    return {"rows": rows, "initial_accuracy": initial, "bytes_per_client_round": per_client, "final_state": state,
            "wall_seconds": time.perf_counter() - clock["start"]}


__all__ = ["LOCAL_RECIPE", "LocalTraining", "build_net", "client_update", "local_seed", "local_train", "run_fedavg",
           "select_clients", "weighted_average"]
