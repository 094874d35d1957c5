"""How the real training set is split among the clients (:func:`partition_indices`): ``iid``,
``noniid:K`` (K classes per client, McMahan et al.'s shards) or ``dirichlet:ALPHA`` (Hsu et al.).

Every draw comes from :func:`datadistill.experiments.seeds.derived_rng` on the run's seed and the
stream :data:`PARTITION_STREAM`: the same seed gives the same split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from datadistill.errors import ConfigError
from datadistill.experiments.seeds import derived_rng

PARTITION_FORMS = ("iid", "noniid:K", "dirichlet:ALPHA")
PARTITION_STREAM = 1  # derived_rng(seed, 1): the partition's draws


@dataclass(frozen=True)
class Partition:
    """A parsed partition string: ``iid``, ``noniid:K`` (K classes per client) or ``dirichlet:ALPHA``."""

    kind: str
    k: int | None = None
    alpha: float | None = None

    def __str__(self) -> str:
        if self.kind == "noniid":
            return f"noniid:{self.k}"
        return f"dirichlet:{self.alpha:g}" if self.kind == "dirichlet" else self.kind


def parse_partition(text: str | Partition) -> Partition:
    """Parse ``iid``, ``noniid:K`` (integer K ≥ 1) or ``dirichlet:ALPHA`` (finite ALPHA > 0).

    Raises:
        ConfigError: any other string, naming it and the accepted forms.
    """
    if isinstance(text, Partition):
        return text
    accepted = f"expected one of {', '.join(PARTITION_FORMS)} (e.g. noniid:2, dirichlet:0.5)"
    if not isinstance(text, str):
        raise ConfigError(f"partition = {text!r} is invalid: {accepted}")
    kind, _, arg = text.strip().lower().partition(":")
    if kind == "iid" and not arg:
        return Partition("iid")
    if kind == "noniid" and arg:
        try:
            k = int(arg)
        except ValueError:
            k = 0
        if k >= 1:
            return Partition("noniid", k=k)
        raise ConfigError(f"partition = {text!r} is invalid: noniid:K needs an integer K ≥ 1 (classes per client)")
    if kind == "dirichlet" and arg:
        try:
            alpha = float(arg)
        except ValueError:
            alpha = float("nan")
        if alpha > 0 and math.isfinite(alpha):
            return Partition("dirichlet", alpha=alpha)
        raise ConfigError(f"partition = {text!r} is invalid: dirichlet:ALPHA needs a finite number ALPHA > 0")
    raise ConfigError(f"partition = {text!r} is invalid: {accepted}")


def _check_clients(clients: Any, n: int) -> int:
    if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
        raise ConfigError(f"clients = {clients!r} is invalid: expected an integer ≥ 1")
    if clients > n:
        raise ConfigError(f"clients = {clients} is invalid: the training set has only {n} images "
                          f"(expected 1 to {n} clients)")
    return clients


def partition_indices(labels: torch.Tensor, clients: int, partition: str | Partition, seed: int = 0,
                      num_classes: int | None = None) -> list[torch.Tensor]:
    """Split the training set among ``clients`` clients; disjoint, covering every image, seeded.

    Forms (every draw from ``derived_rng(seed, PARTITION_STREAM)``):

    * ``iid``: a random permutation cut into ``clients`` shards of equal size (sizes differ by at most one).
    * ``noniid:K``: the shard scheme of McMahan et al. (2017) with shards kept inside one class (as in
      the FedD3 code, so that a client never gets two shards of one class): the images sorted by
      label are cut into N·K shards and client i receives the K
      consecutive shards i·K … i·K+K−1 of the class sequence π(0), π(1), …, π(C−1), π(0), … (π a
      seeded permutation of the C classes). Class c is thus cut into ⌊N·K/C⌋ or ⌈N·K/C⌉ shards of
      near-equal size (its images shuffled first), every client holds exactly K distinct classes and
      every image goes to one client. Needs K ≤ C and N·K ≥ C (else some class would go to nobody).
    * ``dirichlet:ALPHA``: for every class, proportions p ~ Dir(ALPHA·1_N) cut its shuffled images
      among the clients (Hsu et al., 2019; small ALPHA = skewed); redrawn (up to 100 times) until
      every client has at least one image.

    Args:
        labels: (n,) int64 class of every training image, in 0 … C−1.
        clients: N ≥ 1, at most n.
        partition: a partition string (see :func:`parse_partition`) or a :class:`Partition`.
        seed: seeds every random draw (same seed, same split).
        num_classes: C; None = ``labels.max() + 1``.

    Returns:
        ``clients`` sorted 1-D int64 tensors of indices into ``labels``.

    Raises:
        ConfigError: bad ``partition`` string, ``clients`` < 1 or > n, K > C, N·K < C, a class with
            fewer images than the shards it is cut into, or a Dirichlet split that keeps leaving a
            client empty.
    """
    part = parse_partition(partition)
    labels = torch.as_tensor(labels).flatten().to("cpu", torch.int64)
    n = int(labels.numel())
    _check_clients(clients, n)
    c = int(num_classes) if num_classes is not None else (int(labels.max()) + 1 if n else 0)
    if n and (int(labels.min()) < 0 or int(labels.max()) >= c):
        raise ConfigError(f"labels span {int(labels.min())} … {int(labels.max())}: expected class ids 0 … {c - 1}")
    rng = derived_rng(seed, PARTITION_STREAM)
    label_np = labels.numpy()
    if part.kind == "iid":
        parts = np.array_split(rng.permutation(n), clients)
    elif part.kind == "noniid":
        parts = _noniid_parts(label_np, clients, part.k, c, rng)
    else:
        parts = _dirichlet_parts(label_np, clients, part.alpha, c, rng)
    return [torch.from_numpy(np.sort(p).astype(np.int64)) for p in parts]


def _noniid_parts(labels: np.ndarray, clients: int, k: int, c: int, rng: np.random.Generator) -> list[np.ndarray]:
    if k > c:
        raise ConfigError(f"partition = noniid:{k} is invalid: the dataset has only {c} classes "
                          f"(expected noniid:1 to noniid:{c})")
    if clients * k < c:
        raise ConfigError(f"partition = noniid:{k} with {clients} clients is invalid: {clients}×{k} = {clients * k} "
                          f"class shards cannot cover the {c} classes (expected clients × K ≥ {c})")
    order = rng.permutation(c)  # π
    slots = [[int(order[(i * k + j) % c]) for j in range(k)] for i in range(clients)]
    holders: dict[int, list[int]] = {cls: [] for cls in range(c)}
    for i, owned in enumerate(slots):
        for cls in owned:
            holders[cls].append(i)
    parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for cls in range(c):
        members = rng.permutation(np.flatnonzero(labels == cls))
        if len(members) < len(holders[cls]):
            raise ConfigError(f"partition = noniid:{k} with {clients} clients is invalid: class {cls} has "
                              f"{len(members)} images but is cut into {len(holders[cls])} shards")
        for client, shard in zip(holders[cls], np.array_split(members, len(holders[cls]))):
            parts[client].append(shard)
    return [np.concatenate(p) for p in parts]


def _dirichlet_parts(labels: np.ndarray, clients: int, alpha: float, c: int,
                     rng: np.random.Generator) -> list[np.ndarray]:
    for _ in range(100):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for cls in range(c):
            members = rng.permutation(np.flatnonzero(labels == cls))
            cuts = (np.cumsum(rng.dirichlet(np.full(clients, alpha))) * len(members)).astype(np.int64)[:-1]
            for client, piece in enumerate(np.split(members, cuts)):
                parts[client].append(piece)
        merged = [np.concatenate(p) for p in parts]
        if min(len(p) for p in merged) >= 1:
            return merged
    raise ConfigError(f"partition = dirichlet:{alpha:g} left a client without images in 100 draws for "
                      f"{clients} clients and {len(labels)} images: use a larger alpha or fewer clients")


def describe_partition(labels: torch.Tensor, parts: Sequence[torch.Tensor], num_classes: int) -> list[dict[str, Any]]:
    """Per client: ``images`` and ``class_counts`` (images of every class, index = label)."""
    return [{"client": i, "images": int(p.numel()),
             "class_counts": torch.bincount(labels[p], minlength=num_classes)[:num_classes].tolist()}
            for i, p in enumerate(parts)]


__all__ = ["PARTITION_FORMS", "PARTITION_STREAM", "Partition", "describe_partition", "parse_partition",
           "partition_indices"]
