"""Data-parallel student steps for trajectory matching (MTT, DATM, PAD) over ``torch.distributed``
(issue #20, item 3).

Each student step θ_{i+1} = θ_i − α ∇_θ CE(f_θ(x_B), y_B) of a mini-batch B of b synthetic images is
split across the W ranks: rank r takes the contiguous block B_r of :func:`shard_bounds` (sizes
⌈b/W⌉ or ⌊b/W⌋, possibly 0), computes (|B_r| / b) · ∇_θ CE(B_r), and the W terms are summed with
``torch.distributed.nn.functional.all_reduce``, whose backward all-reduces the incoming gradient, so
the outer gradient flows through every rank's shard. Weighting each shard by its size keeps the batch
mean exact when b is not a multiple of W (CE is a mean over the batch:
Σ_r (|B_r|/b) mean_{B_r} = mean_B).

Why the outer gradient is one process's (unrolled and checkpointed alike): every rank holds a replica
of θ_i, α and the set, and computes the same loss L(θ_N). Autograd on rank r gives the adjoint
a^r_i = ∂(Σ_r' L_r')/∂θ^r_i of the sum of all ranks' losses; the identity path of the step keeps
a^r_i rank-local while the all-reduce's backward sums the adjoints, so by induction over the steps
Σ_r a^r_i = (Σ_r c_r) ā_i, where c_r scales rank r's loss and ā_i is one process's adjoint. Each rank
backpropagates L / W (Σ c_r = 1), and the gradients of the learned tensors (images, α, DATM's label
logits), each rank holding the part that flowed through its shards and its replica of α, are summed
by :func:`all_reduce_gradients`: the result is one process's gradient, on every rank.

The synthetic set: every rank holds the whole set and applies the same optimiser update from the same
all-reduced gradient. Owners updating shards and all-gathering them would save nothing: any image may
fall in any rank's shard at any step (the mini-batches are random subsets of the whole set), so every
rank needs all images for its forward passes, and the all-gather would move the set's bytes each
iteration like the gradient all-reduce does. A ring all-reduce leaves the same bits on every rank, so
the replicas stay bit-identical (tests/test_trajectory_parallel.py checks it), the optimiser state
(momentum) is whole on every rank, and rank 0's checkpoint resumes on any number of ranks.
:func:`check_replicas_agree` refuses a run whose ranks start from different sets or generators.

Tolerance against one process: float32, not bit-identical (the shard-weighted sum reorders the sums
of the batch-mean CE and of the ∇θ terms, and the adjoints are summed across ranks). Stated and tested
(tests/test_trajectory_parallel.py, 2 gloo ranks, tiny experts, 3 iterations): every outer gradient
within rtol 2e-4, atol 1e-5 × its largest entry (worst measured: 6.3e-5 × the largest entry, on DATM's
lr gradient, a sum of cancelling terms; the image gradients within 4e-6); the set after three
iterations within rtol 1e-4, atol 1e-4 (worst measured 5.3e-5, images of unit scale, lr_img 1000).

Communication per student step (P = the student's parameter count, float32): one all-reduce of P
values in the forward pass and one in the backward pass (``unrolled``); ``checkpointed`` adds the
all-reduce of its recomputed forward (3 per step). Per iteration: one all-reduce of the learned
tensors' gradients (N·C·H·W + 1, plus N·K with soft labels).

Networks with batch statistics (BatchNorm in train mode) normalise each shard by its own statistics,
as the reference's ``nn.DataParallel`` does, so they are not equivalent to one process: a warning says
so. ConvNet's default instance norm is per image.
"""

from __future__ import annotations

import hashlib
import logging
import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn
from torch.func import functional_call

from datadistill.distributed import World, all_gather_objects
from datadistill.errors import ConfigError
from datadistill.training import classification_loss

log = logging.getLogger("datadistill")


def shard_bounds(n: int, w: World) -> tuple[int, int]:
    """The block [lo, hi) of a mini-batch of ``n`` items that rank ``w.rank`` takes: contiguous blocks,
    the first ``n mod W`` ranks one item more (``torch.tensor_split``'s rule). Example: n = 5, W = 2 →
    rank 0 [0, 3), rank 1 [3, 5); n = 1, W = 2 → rank 1 [1, 1) (empty)."""
    base, extra = divmod(n, w.world_size)
    lo = w.rank * base + min(w.rank, extra)
    return lo, lo + base + (1 if w.rank < extra else 0)


def sharded_student_step(net: nn.Module, names: list[str], params: list[torch.Tensor], x: torch.Tensor | None,
                         targets: torch.Tensor | None, lr: torch.Tensor, create_graph: bool,
                         batch_size: int) -> list[torch.Tensor]:
    """One SGD step of the student on a mini-batch of ``batch_size`` images split across ranks:
    θ ← θ − α Σ_r (|B_r| / b) ∇_θ CE(f_θ(x_r), y_r), the sum all-reduced (with autograd when
    ``create_graph``). Every rank must call it with the same ``params``, ``lr`` and ``batch_size``.

    Args:
        net, names, params, lr, create_graph: as :func:`datadistill.methods.trajectory.student_step`.
        x: (|B_r|, C, H, W) float32, this rank's shard (augmented), or None when the shard is empty.
        targets: (|B_r|,) int64 labels or (|B_r|, K) soft-label logits, or None with ``x``.
        batch_size: b, the whole mini-batch (Σ_r |B_r|).

    Returns:
        The new parameters, identical on every rank.
    """
    if x is not None and len(x):
        logits = functional_call(net, dict(zip(names, params)), (x,))
        ce = classification_loss(logits, targets) * (len(x) / batch_size)
        flat = torch.cat([g.reshape(-1) for g in torch.autograd.grad(ce, params, create_graph=create_graph)])
    else:
        # an empty shard still takes part in the all-reduce and, with a graph, in its backward: the
        # zeros depend on θ so that a backward restricted to ``inputs`` (the checkpointed mode) runs it
        flat = torch.cat([p.reshape(-1) for p in params]) * 0
        if not create_graph:
            flat = flat.detach()
    if create_graph:
        with warnings.catch_warnings():
            # deprecated in torch 2.14 for torch.distributed._functional_collectives.all_reduce, whose
            # autograd is recent (pytorch#168140, 2025); this one is differentiable from torch 2.4 on
            warnings.simplefilter("ignore", FutureWarning)
            flat = dist_fn.all_reduce(flat)
    else:
        dist.all_reduce(flat)
    grads = flat.split([p.numel() for p in params])
    return [p - lr * g.view_as(p) for p, g in zip(params, grads)]


def all_reduce_gradients(tensors: list[torch.Tensor]) -> None:
    """Sum the ``.grad`` of ``tensors`` over the ranks in place, as one flat all-reduce (a missing
    gradient counts as zeros: a rank whose shards never held an image has none)."""
    flat = torch.cat([(t.grad if t.grad is not None else torch.zeros_like(t)).reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    for t, g in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.grad = g.view_as(t).clone()


def check_replicas_agree(tensors: list[torch.Tensor], generator: torch.Generator, w: World) -> None:
    """Refuse ranks that hold different learned tensors or generator states (a different seed or
    data): data-parallel matching needs every rank to draw the same expert, start epoch, mini-batches
    and DSA parameters.

    Raises:
        ConfigError: naming the ranks that differ from rank 0.
    """
    digest = hashlib.sha256(generator.get_state().numpy().tobytes())
    for t in tensors:
        digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    digests = all_gather_objects(digest.hexdigest())
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise ConfigError(f"ranks {differ} of {w.world_size} start from a synthetic set or generator other than "
                          f"rank 0's: every rank needs the same seed and data (data-parallel trajectory matching)")


def warn_batch_statistics(net: nn.Module, w: World) -> None:
    """Log once that a network with BatchNorm normalises each rank's shard by its own statistics."""
    if w.distributed and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        log.warning("the student network has BatchNorm: each of the %d ranks normalises its shard of the "
                    "mini-batch by the shard's statistics (as nn.DataParallel in the reference code), so the "
                    "result differs from one process; an instance-norm model is equivalent", w.world_size)


__all__ = ["all_reduce_gradients", "check_replicas_agree", "shard_bounds", "sharded_student_step",
           "warn_batch_statistics"]
