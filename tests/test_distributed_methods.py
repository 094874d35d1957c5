"""Class-sharded distillation (issue #20, item 2): a world of 2 gloo processes on the CPU gives the
synthetic set of one process. The tiny set has 3 classes, so the ranks own unequal blocks ([0] and
[1, 2]); IPC 2, 3 iterations, the tiny ConvNet (instance norm).

The equivalence (docs: src/datadistill/methods/sharding.py), measured on this machine:

* dm, datadam: bit-identical images and momentum (each class's gradient is computed from the same
  numbers); the loss history agrees within float32 rounding of its sum (relative 1e-7).
* dc, dsa: images within 2.4e-7 (largest absolute difference; images ~N(0, 1)): the per-class
  gradients are taken in a vmap over a rank's classes instead of all classes.
* cafe, cafe_dsa: images within 7.2e-7: the centre gradient of the discrimination term is summed
  over the ranks instead of in one matrix product.

The tolerance asserted is 1e-5 absolute for every image (over ten times the largest measured
difference) and 1e-6 relative for the losses.
"""

from __future__ import annotations

import pytest
import torch

from dist_helpers import run_ranks
from dist_scenarios_methods import RUNS, distil, run_jobs

EXACT = ("dm", "datadam")
IMAGE_ATOL = 1e-5
LOSS_RTOL = 1e-6


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Every job run once in a world of 2 (one spawn for the module: the start-up dominates)."""
    return run_ranks(2, run_jobs, [*RUNS, "resumed_dm", "collectives"], out=tmp_path_factory.mktemp("world2"))


@pytest.fixture(scope="module")
def alone():
    """The same jobs in this one process, memoised per method."""
    cache: dict = {}

    def get(method: str, iterations: int = 3) -> dict:
        if (method, iterations) not in cache:
            cache[method, iterations] = distil(method, iterations)
        return cache[method, iterations]

    return get


@pytest.fixture(autouse=True)
def _tiny(tiny_model):
    return tiny_model


def _momentum(result: dict) -> list[torch.Tensor]:
    return [s["momentum_buffer"] for s in result["state"]["optimiser"]["state"].values()]


@pytest.mark.parametrize("method", list(RUNS))
def test_world_of_two_gives_the_set_of_one_process(ranks, alone, method):
    r0, r1 = ranks[0][method], ranks[1][method]
    assert (r0["own_classes"], r1["own_classes"]) == ([0], [1, 2])
    assert torch.equal(r0["images"], r1["images"])  # the whole set on every rank, bit for bit
    one = alone(method)
    assert not torch.equal(one["images"], distil(method, 0)["images"])  # the steps moved the set
    if method in EXACT:
        assert torch.equal(r0["images"], one["images"])
        for a, b in zip(_momentum(r0), _momentum(one)):
            assert torch.equal(a, b)
    else:
        torch.testing.assert_close(r0["images"], one["images"], rtol=0, atol=IMAGE_ATOL)
        for a, b in zip(_momentum(r1), _momentum(one)):
            torch.testing.assert_close(a, b, rtol=0, atol=IMAGE_ATOL)
    assert r0["losses"] == pytest.approx(one["losses"], rel=LOSS_RTOL)
    assert r0["losses"] == r1["losses"]


def test_the_checkpoint_state_is_gathered_on_every_rank(ranks):
    """The state a checkpoint holds (written by rank 0) has every class's rows on every rank."""
    for method in RUNS:
        s0, s1 = ranks[0][method]["state"], ranks[1][method]["state"]
        assert torch.equal(s0["images"], s1["images"])
        for a, b in zip(_momentum(ranks[0][method]), _momentum(ranks[1][method])):
            assert torch.equal(a, b)
            assert a.abs().sum() > 0 and a[:2].abs().sum() > 0 and a[2:].abs().sum() > 0


def test_two_ranks_resume_a_one_process_checkpoint(ranks, alone):
    """2 DM steps alone, then both ranks load that state and take 2 more: the 4-step set of one process."""
    one = alone("dm", 4)
    for r in ranks:
        assert torch.equal(r["resumed_dm"]["images"], one["images"])


def test_collectives_on_unequal_blocks(ranks):
    for rank, r in enumerate(ranks):
        c = r["collectives"]
        assert torch.equal(c["gathered"], torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
        assert c["any"] == [True, False]
        assert c["sum"].item() == 3.0
        assert c["main"] == "from rank 0"
        assert c["error"] == "refused on rank 0"  # rank 0's refusal raised on every rank
        assert c["solo"] == (1, rank + 1)  # inside solo(): a world of one, no collective
