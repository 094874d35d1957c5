"""What the clients upload, and its size in bytes, counted exactly from the tensors sent: a FedD3
upload is its images as float32 plus its int64 labels (:func:`synthetic_upload`); a FedAvg upload is
the model's floating-point state as float32 (:func:`model_state`). Sizes in bytes (B): the payload
(:func:`upload_bytes`, headers excluded) and, as a cross-check, the same tensors as one safetensors
file (:func:`safetensors_bytes`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def tensor_bytes(*tensors: torch.Tensor) -> int:
    """Bytes of the tensors' data as stored (numel × element size), headers excluded."""
    return sum(int(t.numel()) * t.element_size() for t in tensors)


def synthetic_upload(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a FedD3 client sends: ``images`` (n, C, H, W) float32 and ``labels`` (n,) int64 (global ids)."""
    return {"images": images.detach().to("cpu", torch.float32).contiguous(),
            "labels": labels.detach().to("cpu", torch.int64).contiguous()}


def upload_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Exact payload of an upload in bytes: Σ numel × element size of its tensors."""
    return tensor_bytes(*tensors.values())


def safetensors_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Size in bytes of the same tensors serialised as one safetensors file (payload + header)."""
    from safetensors.torch import save

    return len(save(dict(tensors)))


def model_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The part of ``net``'s state a FedAvg client uploads: every floating-point tensor of its
    ``state_dict`` (parameters and floating buffers such as BatchNorm running statistics) as float32
    CPU copies. Integer buffers (BatchNorm's batch counter) are not sent: every client keeps the server's."""
    return {k: v.detach().to("cpu", torch.float32).clone() for k, v in net.state_dict().items()
            if v.is_floating_point()}


__all__ = ["model_state", "safetensors_bytes", "synthetic_upload", "tensor_bytes", "upload_bytes"]
