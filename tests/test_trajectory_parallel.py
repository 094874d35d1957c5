"""Data-parallel trajectory matching (issue #20, item 3; methods/data_parallel.py): MTT, DATM and PAD
run by 2 gloo processes on the CPU give, at every iteration, one process's image / lr / label-logit
gradients and, after three iterations, its synthetic set, in both memory modes, with mini-batches
that split evenly, unevenly (5 = 3 + 2) and leave one rank empty (1 = 1 + 0). The two ranks end
bit-identical, each network forward sees only its rank's shard, and ranks seeded differently are
refused. One spawn of 2 processes runs every scenario (module fixture); one process runs the
references in the test process.

Tolerance (stated in methods/data_parallel.py): gradients rtol 2e-4, atol 1e-5 × their largest entry;
the set after three iterations rtol 1e-4, atol 1e-4 (float32 sums in another order; measured worst:
6.3e-5 × the largest entry, on DATM's lr gradient, a sum of cancelling terms; 5.3e-5 on the set)."""

from __future__ import annotations

import pytest
import torch

from datadistill.distributed import World
from datadistill.methods.data_parallel import shard_bounds
from datadistill.models import MODELS
from datadistill.trajectory import train_experts
from dist_helpers import run_ranks
from dist_scenarios_trajectory import ITERATIONS, SCENARIOS, rank_scenarios, run_scenario
from helpers import DSA_ON, TINY_MODEL, make_tiny_dataset, tiny_builder
from trajectory_helpers import CPU, expert_settings

WORLD = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """{scenario: (one process's result, [rank 0's, rank 1's])} and the refusal messages."""
    root = tmp_path_factory.mktemp("trajectory_parallel")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setitem(MODELS._items, TINY_MODEL, tiny_builder)
        experts_dir = train_experts(make_tiny_dataset(), root / "experts", expert_settings(TINY_MODEL), CPU)
        single = {name: run_scenario(name, experts_dir) for name in SCENARIOS}
    ranks = run_ranks(WORLD, rank_scenarios, str(experts_dir), out=root / "ranks")
    return {"results": {name: (single[name], [r["results"][name] for r in ranks]) for name in SCENARIOS},
            "refused": [r["refused"] for r in ranks]}


def test_shard_bounds_cover_the_batch_in_contiguous_near_equal_blocks():
    assert [shard_bounds(5, World(r, 2)) for r in range(2)] == [(0, 3), (3, 5)]
    assert [shard_bounds(1, World(r, 2)) for r in range(2)] == [(0, 1), (1, 1)]
    assert [shard_bounds(6, World(r, 4)) for r in range(4)] == [(0, 2), (2, 4), (4, 5), (5, 6)]
    for n in range(0, 12):
        for w in range(1, 5):
            blocks = [shard_bounds(n, World(r, w)) for r in range(w)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
            assert max(hi - lo for lo, hi in blocks) - min(hi - lo for lo, hi in blocks) <= 1


def test_dsa_subset_of_a_slice_is_the_transform_of_the_slice():
    from datadistill.augment import DSA

    x = torch.randn(6, 1, 12, 12)
    for seed in range(8):  # one op per image, so the 6 images mix the five ops
        t = DSA(DSA_ON).sample(6, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(t.subset(slice(2, 5))(x[2:5]), t(x)[2:5], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_two_ranks_match_one_process(runs, name):
    one, (r0, r1) = runs["results"][name]
    # the ranks hold the same set, bit for bit, and saw the same all-reduced gradients
    for key in ("final", "output"):
        for a, b in zip(r0[key], r1[key]):
            assert torch.equal(a, b)
    for g0, g1 in zip(r0["grads"], r1["grads"]):
        assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    assert torch.equal(r0["losses"], r1["losses"])
    # each rank's network saw only its shard of every mini-batch
    method, extra = SCENARIOS[name]
    b = extra["batch_syn"] or 6
    assert set(one["sizes"].tolist()) == {b}
    for r, res in enumerate((r0, r1)):
        lo, hi = shard_bounds(b, World(r, WORLD))
        assert set(res["sizes"].tolist()) == ({hi - lo} if hi > lo else set())
    # … and the gradients (images, lr, label logits) are one process's at every iteration
    assert len(one["grads"][0]) == (2 if method == "mtt" else 3)
    torch.testing.assert_close(r0["losses"], one["losses"], rtol=1e-5, atol=0)
    for it in range(ITERATIONS):
        for got, want in zip(r0["grads"][it], one["grads"][it]):
            scale = float(want.abs().max())
            assert scale > 0
            torch.testing.assert_close(got, want, rtol=2e-4, atol=1e-5 * scale)
    for key in ("final", "output"):
        for got, want in zip(r0[key], one[key]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_iteration_all_reduces_what_the_projection_counts(runs, name):
    """Per iteration (benchmarks/dist_projection.py counts the same): every student step all-reduces
    the student's P parameters' gradient once forward and once backward (``checkpointed``: once more
    in its recomputed forward), then one all-reduce of the learned tensors' gradients."""
    one, ranks = runs["results"][name]
    method, extra = SCENARIOS[name]
    per_step = 2 if extra["memory"] == "unrolled" else 3
    learned = sum(t.numel() for t in one["final"])  # images, lr (, label logits)
    expected = [int(one["params"])] * (per_step * 3) + [learned]  # syn_steps 3
    for res in ranks:
        assert res["comm"].tolist() == [expected] * ITERATIONS


def test_ranks_seeded_differently_are_refused(runs):
    for message in runs["refused"]:
        assert "ranks [1] of 2" in message and "same seed" in message
