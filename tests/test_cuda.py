"""On a CUDA GPU (marker ``cuda``; skipped with the reason elsewhere, run by scripts/device_check.sh):
the evaluation and a method step give what the CPU gives, within float tolerance, and the K networks
trained together under vmap end as the sequential loop leaves them."""

from __future__ import annotations

import pytest
import torch

from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
from datadistill.io import SyntheticSet
from helpers import TINY_MODEL, make_distiller

pytestmark = pytest.mark.cuda
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def tiny_set() -> SyntheticSet:
    gen = torch.Generator().manual_seed(0)
    return SyntheticSet(torch.randn(6, 1, 28, 28, generator=gen), torch.tensor([0, 0, 1, 1, 2, 2]),
                        metadata={"num_classes": 3})


def trained(device: torch.device, tiny_dataset, **kw) -> tuple[list[float], dict[int, dict[str, torch.Tensor]]]:
    """The accuracies and the trained weights (on the CPU) of 3 networks, 2 epochs."""
    weights: dict[int, dict[str, torch.Tensor]] = {}
    settings = EvalSettings(model=TINY_MODEL, num_eval=3, epochs=2, batch_size=4, **kw)
    res = evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings, device, seed=1,
                                 on_model=lambda k, net: weights.update({k: {n: t.detach().cpu().clone()
                                                                             for n, t in net.state_dict().items()}}))
    return res.accuracies, weights


def close(a: dict[int, dict[str, torch.Tensor]], b: dict[int, dict[str, torch.Tensor]], atol: float) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k][n], b[k][n], atol=atol, rtol=1e-3) for k in a for n in a[k])


def test_vectorised_networks_on_cuda_end_as_the_sequential_loop(tiny_dataset, tiny_model):
    _, sequential = trained(CUDA, tiny_dataset, vectorise=False)
    _, together = trained(CUDA, tiny_dataset, vectorise=True)
    assert close(sequential, together, atol=1e-4)


def test_vectorised_is_the_default_on_cuda(tiny_dataset, tiny_model):
    settings = EvalSettings(model=TINY_MODEL, num_eval=2, epochs=1, batch_size=4)
    assert evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings, CUDA).vectorised


def test_evaluation_on_cuda_trains_the_networks_the_cpu_trains(tiny_dataset, tiny_model):
    _, on_cpu = trained(CPU, tiny_dataset, vectorise=False)
    _, on_gpu = trained(CUDA, tiny_dataset, vectorise=False)
    assert close(on_cpu, on_gpu, atol=1e-3)


@pytest.mark.parametrize("method", ["dm", "datadam"])
def test_a_matching_step_on_cuda_equals_the_cpu_step(method, tiny_dataset, tiny_model):
    images = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)  # the step's random network comes from torch's default generator
        d = make_distiller(method, tiny_dataset, ipc=2, device=device)
        d.initialise("real")
        d.step()
        images[device] = d.images.detach().cpu()
    assert torch.allclose(images["cpu"], images["cuda"], atol=1e-4, rtol=1e-3)
