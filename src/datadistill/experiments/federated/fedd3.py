"""FedD3 (Song et al., 2023): every client distils its own images once with a registered method
(:func:`fedd3_client`, the clients in parallel worker processes) and uploads the synthetic set; the
server trains a fresh network on the union of the uploads under the standard evaluation protocol
(:func:`datadistill.evaluation.evaluate_synthetic_set`). One round (:func:`run_fedd3`).

A client holds only some classes: those it holds at least ``client_ipc`` images of are relabelled
0 … m−1 for the method (:func:`datadistill.data.class_subset`), and the synthetic labels go back to
global class ids (:func:`datadistill.data.to_global`) before the upload.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from datadistill.config import DistillConfig
from datadistill.data import DatasetSpec, LabelledImages, SplitDataset, class_subset, to_global
from datadistill.errors import ConfigError
from datadistill.experiments.federated.partition import parse_partition
from datadistill.experiments.federated.payload import safetensors_bytes, synthetic_upload, upload_bytes
from datadistill.experiments.federated.settings import FEDD3_STREAM, FederatedConfig, Progress, UnitProgress
from datadistill.experiments.seeds import derived_seed

if TYPE_CHECKING:
    from datadistill.evaluation.parts import EvalParts


def fedd3_client(client: int, images: torch.Tensor, labels: torch.Tensor, spec: DatasetSpec,
                 distill_config: DistillConfig) -> dict[str, Any]:
    """One FedD3 client: distil its images once and return what it uploads (a worker task).

    The classes with at least ``distill_config.ipc`` images are renumbered 0 … m−1 for the method (a
    dataset spec with those m class names), distilled with :func:`datadistill.api.distill` (no
    evaluation), and the synthetic labels are mapped back to the global class ids. Soft labels are
    uploaded as their argmax class.

    Args:
        client: the client's index.
        images: (n, C, H, W) float32 normalised, the client's training images.
        labels: (n,) int64 global class ids.
        spec: the global dataset's spec.
        distill_config: the client's settings (its ``ipc`` is K per class).

    Returns:
        ``client``, ``classes`` (global ids distilled), ``skipped_classes`` (held but fewer than K
        images), ``images`` (m·K, C, H, W) float32, ``labels`` (m·K,) int64 global ids,
        ``distill_seconds``, ``iterations``.
    """
    from datadistill.api import distill

    k = spec.num_classes
    counts = torch.bincount(labels, minlength=k)[:k]
    classes = [c for c in range(k) if int(counts[c]) >= distill_config.ipc]
    skipped = [c for c in range(k) if 0 < int(counts[c]) < distill_config.ipc]
    out = {"client": client, "classes": classes, "skipped_classes": skipped, "distill_seconds": 0.0, "iterations": 0,
           "images": torch.empty(0, *images.shape[1:]), "labels": torch.empty(0, dtype=torch.int64)}
    if not classes:
        return out
    nothing = LabelledImages(torch.empty(0, *images.shape[1:]), torch.empty(0, dtype=torch.int64))
    own = class_subset(SplitDataset(spec, LabelledImages(images, labels), nothing), classes)
    start = time.perf_counter()
    result = distill(distill_config, dataset=own, evaluate=False)
    syn = result.synthetic_set
    out.update(images=syn.images.detach().to("cpu", torch.float32).contiguous(),
               labels=to_global(syn.hard_labels, classes), distill_seconds=time.perf_counter() - start,
               iterations=result.iterations_run)
    return out


def run_fedd3(config: FederatedConfig, data: SplitDataset, parts: Sequence[torch.Tensor],
              progress: Progress | None = None, *, done: Mapping[int, Mapping[str, Any]] | None = None,
              on_client: Callable[[int, dict[str, Any]], None] | None = None,
              server_parts: EvalParts | None = None, on_unit: UnitProgress | None = None) -> dict[str, Any]:
    """FedD3: distil every client (``config.workers`` processes; client ``i`` with the seed
    ``derived_seed(seed, FEDD3_STREAM, i)``), train the server on the union.

    Args:
        done: clients finished earlier, i → what :func:`fedd3_client` returned (not distilled again).
        on_client: called ``(i, upload)`` as each client distilled here finishes (to keep it).
        server_parts: where the server's finished networks are kept and reused from.
        on_unit: called ``("fedd3", clients done, clients, reused)`` as each client is done and
            ``("server", epochs done, epochs of all its networks, reused)`` as the server trains.

    Returns:
        A JSON-able summary (``accuracy_mean`` %, ``bytes_per_client``, ``bytes_total`` B, …) plus
        ``synthetic_set``, the union (a :class:`~datadistill.io.SyntheticSet` whose metadata adds
        ``model``, ``seed``, ``iterations`` and ``federated`` to the dataset's keys).

    Raises:
        ConfigError: no client holds ``client_ipc`` images of any class, or an invalid client setting.
        Whatever a client's distillation raises.
    """
    from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
    from datadistill.experiments.workers import run_tasks
    from datadistill.io import SyntheticSet, synthetic_set_metadata
    from datadistill.runtime import select_device

    spec = data.spec
    reused = {i: dict(u) for i, u in (done or {}).items()}
    todo = [i for i in range(len(parts)) if i not in reused]
    tasks = [(fedd3_client, {"client": i, "images": data.train.images[parts[i]], "labels": data.train.labels[parts[i]],
                             "spec": spec,
                             "distill_config": config.client_distill_config(derived_seed(config.seed, FEDD3_STREAM,
                                                                                         i))})
             for i in todo]
    start = time.perf_counter()

    counted = [0]

    def report(i: int, r: dict[str, Any], how: str = "") -> None:
        counted[0] += 1
        if on_unit is not None:
            on_unit("fedd3", counted[0], len(parts), bool(how))
        if progress:
            progress("fedd3", f"client {i}: {len(r['labels'])} synthetic images of classes {r['classes']} "
                              f"in {r['distill_seconds']:.1f} s{how}")

    for i, r in reused.items():
        report(i, r, " (reused)")

    def finished(j: int, r: dict[str, Any]) -> None:
        if on_client is not None:
            on_client(todo[j], r)
        report(todo[j], r)

    fresh = dict(zip(todo, run_tasks(tasks, workers=config.workers, progress=finished)))
    uploads = [reused[i] if i in reused else fresh[i] for i in range(len(parts))]
    distill_wall = time.perf_counter() - start
    if not any(len(u["labels"]) for u in uploads):
        raise ConfigError(f"client_ipc = {config.client_ipc} is invalid for this partition: no client holds "
                          f"{config.client_ipc} images of any class (expected a smaller client_ipc)")
    payloads = [synthetic_upload(u["images"], u["labels"]) for u in uploads]
    per_client = [upload_bytes(p) for p in payloads]
    per_client_file = [safetensors_bytes(p) if len(p["labels"]) else 0 for p in payloads]
    images = torch.cat([p["images"] for p in payloads])
    labels = torch.cat([p["labels"] for p in payloads])
    meta = synthetic_set_metadata(spec, method=config.client_method, ipc=config.client_ipc, model=config.model,
                                  seed=config.seed, iterations=config.client_iterations,
                                  federated={"clients": config.clients,
                                             "partition": str(parse_partition(config.partition))})
    union = SyntheticSet(images, labels, metadata=meta)
    settings = EvalSettings(model=config.model, num_eval=config.server_num_eval, epochs=config.server_epochs,
                            lr=config.server_lr, batch_size=config.server_batch, momentum=config.server_momentum,
                            weight_decay=config.server_weight_decay,
                            dsa_strategy=config.server_dsa_strategy or spec.dsa_strategy)
    if progress:
        progress("server", f"training {config.server_num_eval} {config.model} on {len(union)} synthetic images "
                           f"for {config.server_epochs} epochs")
    t0 = time.perf_counter()
    def server_epoch(p) -> None:  # the K server networks' epochs as one count
        if on_unit is not None:
            on_unit("server", p.networks.start * p.epochs + p.epoch * len(p.networks), p.num_eval * p.epochs,
                    p.reused)

    ev = evaluate_synthetic_set(union, data.test, settings, select_device(config.device), seed=config.seed,
                                parts=server_parts, on_epoch=server_epoch if on_unit is not None else None)
    server_seconds = time.perf_counter() - t0
    return {
        "accuracy_mean": ev.mean, "accuracy_std": ev.std, "accuracies": ev.accuracies, "rounds": 1,
        "synthetic_images": len(union), "class_counts": torch.bincount(labels, minlength=spec.num_classes).tolist(),
        "bytes_per_client": per_client, "bytes_total": sum(per_client),
        "safetensors_bytes_per_client": per_client_file, "safetensors_bytes_total": sum(per_client_file),
        "clients": [{k: v for k, v in u.items() if k not in ("images", "labels")}
                    | {"synthetic_images": len(u["labels"])} for u in uploads],
        "distill_wall_seconds": distill_wall, "server_seconds": server_seconds,
        "wall_seconds": distill_wall + server_seconds, "server_settings": settings.as_dict(),
        "synthetic_set": union,
    }


__all__ = ["fedd3_client", "run_fedd3"]
