"""Class-sharded distillation (issue #20): the ranks of a distributed run split the classes of a
per-class matching method (dm, datadam, dc, dsa, cafe, cafe_dsa: ``Distiller.sharded = True``).

How a step runs on R ranks (launched by torchrun, :mod:`datadistill.distributed`):

* each rank owns a contiguous block of classes (:func:`~datadistill.distributed.balanced_blocks`
  over equal per-class work: every class draws the same number of real images and holds ``ipc``
  synthetic ones, so blocks differ by one class at most); more ranks than classes is refused;
* every rank draws every random number of the one-process run, in the same order, from the same
  seeds: the fresh network (torch's default generator), every class's real batch indices and every
  class's DSA parameters (the run's generator; :meth:`RealSet.sample` with ``classes`` reads only
  the rank's own images, :meth:`DSATransform.subset` applies only its own classes' draws);
* each rank computes its classes' loss terms and updates its classes' images; the other rows of its
  copy get a zero gradient, so they never move;
* after every update the ranks all-gather the updated rows (:meth:`ClassSharding.sync_images`), so
  every rank holds the whole set: the bi-level methods (dc, dsa, cafe) train their network on it,
  and the checkpoint, the trackers and the final file read it; the reported loss is the all-reduced
  sum of the ranks' losses;
* CAFE's discrimination term couples the classes (each real image is scored against every class's
  synthetic centre): the ranks all-gather the centres, each differentiates its own real images' term
  with respect to every centre, the centre gradients are all-reduced and each rank pushes its own
  centres' share back into its images (the chain rule split at the centres); CAFE's accuracy checks
  count correct predictions on each rank's own classes and all-reduce the counts (integers: exact).

The equivalence with one process (tests/test_distributed_methods.py: 2 gloo processes on the CPU,
3 classes split [0] / [1, 2], IPC 2, 3 iterations; the figures measured there):

* dm, datadam: bit-identical images and momentum. Each class's gradient depends on that class's
  images only, and a rank computes it from the same numbers in the same order (the loss is a sum of
  per-class terms; its backward gives each term the gradient 1 exactly). Only the reported loss,
  summed in another order, differs by float32 rounding (relative 1e-7).
* dc, dsa: images equal within 2.4e-7 (largest absolute difference; images are ~N(0, 1)): the
  synthetic side's per-class gradients are taken in one vmap over the rank's classes instead of all
  classes, and a vmap over another batch of classes rounds differently (with ``batched = False``,
  the per-class loop, dc is bit-identical too: measured).
* cafe, cafe_dsa: images equal within 7.2e-7: the centre gradient of the discrimination term is summed
  over the ranks instead of in one matrix product.
* The tests assert 1e-5 (absolute, images and momentum) for dc, dsa, cafe and cafe_dsa, and equality
  for dm and datadam. On CUDA (NCCL) the same holds within float rounding; bit-identity there is
  not claimed (the kernels may depend on the batch size).
* The equivalence assumes a network without BatchNorm (the default ConvNet uses instance norm), or
  dc / dsa (their BatchNorm statistics come from every class's real images on every rank, and are
  frozen while matching). With BatchNorm in training mode a batch's statistics span the classes of
  the pass: dm / datadam with ``batched = True`` and CAFE's accuracy checks after training then see
  only a rank's own classes, as the reference code's per-class loop (``batched = False``) does.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from datadistill import distributed
from datadistill.errors import ConfigError


class ClassSharding:
    """The class sharding of :class:`~datadistill.methods.base.Distiller` (a mixin: it reads the
    distiller's ``spec``, ``ipc``, ``images`` and ``world``). In one process, or for a method that is
    not :attr:`sharded`, every rank owns every class and nothing here communicates."""

    sharded = False  # Distiller.sharded: True when a distributed run splits the classes over the ranks
    world: distributed.World
    class_blocks: list[list[int]]
    own_classes: list[int]

    def _setup_sharding(self) -> None:
        """Set :attr:`world`, :attr:`class_blocks` and :attr:`own_classes` (at construction).

        Raises:
            ConfigError: more ranks than classes.
        """
        g = self.spec.num_classes
        self.world = distributed.world()
        self.class_blocks = [list(range(g))]
        self.own_classes = list(range(g))
        if not self.sharding:
            return
        if self.world.world_size > g:
            name = getattr(self, "name", type(self).__name__)
            raise ConfigError(f"{self.world.world_size} processes but {g} classes: {name} splits the classes over "
                              f"the processes, start at most {g}")
        self.class_blocks = distributed.balanced_blocks([1.0] * g, self.world.world_size)
        self.own_classes = self.class_blocks[self.world.rank]

    @property
    def sharding(self) -> bool:
        """Whether this run's classes are split over several ranks (a :attr:`sharded` method in a
        distributed world)."""
        return self.sharded and self.world.distributed

    @property
    def own_rows(self) -> slice:
        """This rank's rows of ``images`` (its classes' ``ipc`` images each; every row in one process)."""
        return slice(self.own_classes[0] * self.ipc, (self.own_classes[-1] + 1) * self.ipc)

    def global_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss of every class (detached): this rank's classes' ``loss`` summed over the ranks."""
        return distributed.all_reduce_sum(loss.detach()) if self.sharding else loss.detach()

    def global_count(self, count: torch.Tensor) -> int:
        """An integer count over this rank's classes summed over the ranks (exact)."""
        return int(distributed.all_reduce_sum(count.to(torch.int64).cpu())) if self.sharding else int(count)

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor shaped like ``images`` whose rows are each taken from the rank owning their class."""
        counts = [len(b) * self.ipc for b in self.class_blocks]
        return distributed.gather_rows(t[self.own_rows].detach().contiguous(), counts)

    def sync_images(self) -> None:
        """Every rank's classes' images into every rank's ``images`` (after each update of a sharded
        run; a no-op otherwise): the whole set is then the same on every rank, bit for bit."""
        if self.sharding:
            with torch.no_grad():
                self.images.copy_(self.gather_rows(self.images))

    def _image_buffers(self, per_param_states) -> list[tuple[dict[str, Any], str]]:
        return [(per_param, key) for per_param in per_param_states for key, value in per_param.items()
                if torch.is_tensor(value) and value.shape == self.images.shape]

    def gathered_optimiser_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` (an optimiser's ``state_dict()``) with its image-shaped buffers (momentum) gathered
        from the ranks owning each class (a collective: every rank calls it at the same step)."""
        if not self.sharding:
            return state
        state = copy.deepcopy(state)
        for per_param, key in self._image_buffers(state.get("state", {}).values()):
            per_param[key] = self.gather_rows(per_param[key])
        return state

    def drop_others_buffers(self, optimiser: torch.optim.Optimizer) -> None:
        """Zero the rows of other ranks' classes in ``optimiser``'s image-shaped buffers (after loading
        a gathered state: as in an uninterrupted run, no rank holds momentum for others' classes)."""
        if not self.sharding:
            return
        keep = torch.zeros(self.images.shape[0], dtype=torch.bool, device=self.images.device)
        keep[self.own_rows] = True
        for per_param, key in self._image_buffers(optimiser.state.values()):
            per_param[key][~keep] = 0


__all__ = ["ClassSharding"]
