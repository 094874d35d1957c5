"""Named evaluation protocols: ``ours`` (one fixed protocol for every method, :data:`~datadistill.
evaluation.protocol.EVAL_RECIPE`: the default, for comparisons between methods) and ``paper`` (each
method's own, as its official code evaluates; ``paper:<method>`` names one method's explicitly, e.g.
for a set imported from another toolkit).

Every paper protocol trains K fresh networks with SGD, momentum 0.9, weight decay 5e-4, the lr ÷10
once around mid-training, and tests each once after the last epoch (the official ``evaluate_synset``
of every repository below). What differs, per method (:data:`PAPER_PROTOCOLS`; docs/faithfulness.md
gives the lines of the official files):

=========  ====  ======  =====  ========  =====================================================
method     K     epochs  batch  lr        augmentation
=========  ====  ======  =====  ========  =====================================================
dc         20    1000    256    0.01      DC's own on MNIST (``dc:crop_scale_rotate``), ``dc:crop_noise``
                 / 300                    for ConvNet-BN networks, else none with 300 epochs
dsa        20    1000    256    0.01      DSA (the run's strategy)
dm         5     1000    256    0.01      DSA
cafe       20    1000    256    0.01      as dc, but 600 epochs without augmentation
                 / 600
cafe_dsa   20    1000    256    0.01      DSA
datadam    10    1800    64     0.01      DSA
mtt        5     1000    256    learned   DSA
datm, pad  5     1000    128    learned   DSA (soft labels: soft cross-entropy)
coresets   as dc (the protocol under which DC's paper published the coreset baselines; our choice)
=========  ====  ======  =====  ========  =====================================================

Not reproduced (docs/faithfulness.md): the references train E + 1 epochs and divide the lr after
epoch E/2 + 1 with a fresh optimiser (we train E and divide it at E/2, momentum kept), and they pool
5 distilled sets × K networks per published cell (we evaluate the one set given).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from datadistill.config import DistillConfig
from datadistill.errors import ConfigError
from datadistill.evaluation.protocol import EvalSettings
from datadistill.training import NO_AUGMENTATION, TrainRecipe

DC_STRATEGY = "dc:crop_scale_rotate"
"""DC's evaluation augmentation on MNIST (``get_daparam``)."""
DC_BN_STRATEGY = "dc:crop_noise"
"""DC's evaluation augmentation for ConvNet-BN networks (``get_daparam``)."""


PROTOCOL_KEYS = ("num_eval", "epochs", "lr", "batch_size", "momentum", "weight_decay", "dsa_strategy")
"""The :class:`EvalSettings` keys a protocol sets (an override of one is recorded as such)."""


@dataclass(frozen=True)
class PaperProtocol:
    """One method's evaluation in its official code.

    Attributes:
        reference: the paper.
        source: the official files and lines the values come from.
        num_eval: networks trained (K).
        epochs: epochs with augmentation.
        batch_size: mini-batch size.
        lr: initial lr; None = the set's learned lr (MTT family; the architecture's default when the
            set has none).
        augmentation: ``"dsa"`` (the run's DSA strategy) or ``"dc"`` (DC's ``get_daparam`` rule: its
            own augmentation on MNIST and for ConvNet-BN networks, none otherwise).
        epochs_without_augmentation: epochs when the ``"dc"`` rule gives no augmentation.
    """

    reference: str
    source: str
    num_eval: int
    epochs: int
    batch_size: int
    lr: float | None
    augmentation: str
    epochs_without_augmentation: int | None = None


_VICO = "VICO-UoE/DatasetCondensation"
_DC = PaperProtocol(
    "DC (Zhao, Mopuri & Bilen, ICLR 2021)",
    f"{_VICO} main.py L21 (num_eval 20), L25 (lr_net 0.01), L27 (batch_train 256), L116-123 (DC augmentation "
    "and 1000 epochs, else 300); utils.py get_daparam L428, augment L365, evaluate_synset L337",
    num_eval=20, epochs=1000, batch_size=256, lr=0.01, augmentation="dc", epochs_without_augmentation=300)
_DSA = PaperProtocol(
    "DSA (Zhao & Bilen, ICML 2021)",
    f"{_VICO} main.py L21 (num_eval 20), L27 (batch_train 256), L111-112 (DSA: 1000 epochs); readme: no flip "
    "on MNIST/SVHN", num_eval=20, epochs=1000, batch_size=256, lr=0.01, augmentation="dsa")
_DM = PaperProtocol(
    "DM (Zhao & Bilen, WACV 2023)",
    f"{_VICO} readme.md L176 (--num_eval 5; main_DM.py L20's default is 20), main_DM.py L21 (1000 epochs), "
    "L24 (lr_net 0.01), L26 (batch_train 256), L28 (DSA)", num_eval=5, epochs=1000, batch_size=256, lr=0.01, augmentation="dsa")
_CAFE = PaperProtocol(
    "CAFE (Wang et al., CVPR 2022)",
    "kaiwang960112/CAFE distill.py L68 (num_eval 20), L72 (lr_net 0.01), L74 (batch_train 256), L179-193 "
    "(DC augmentation and 1000 epochs, else 600); utils.py get_daparam L396",
    num_eval=20, epochs=1000, batch_size=256, lr=0.01, augmentation="dc", epochs_without_augmentation=600)
_CAFE_DSA = dataclasses.replace(
    _CAFE, reference="CAFE+DSA (Wang et al., CVPR 2022)",
    source="kaiwang960112/CAFE distill.py L68, L74, L179-181 (DSA: 1000 epochs)", augmentation="dsa",
    epochs_without_augmentation=None)
_DATADAM = PaperProtocol(
    "DataDAM (Sajedi et al., ICCV 2023)",
    "DataDistillation/DataDAM main_DataDAM.py L25 (num_eval 10), L26 (epoch_eval_train 1800), L29 (lr_net "
    "0.01), L31 (batch_train 64), L33 (DSA)", num_eval=10, epochs=1800, batch_size=64, lr=0.01,
    augmentation="dsa")
_MTT = PaperProtocol(
    "MTT (Cazenavette et al., CVPR 2022)",
    "GeorgeCazenavette/mtt-distillation distill.py L426 (num_eval 5), L430 (epoch_eval_train 1000), L441 "
    "(batch_train 256), L210 (lr_net = the learned lr), L446-449 (DSA)", num_eval=5, epochs=1000,
    batch_size=256, lr=None, augmentation="dsa")
_DATM = PaperProtocol(
    "DATM (Guo et al., ICLR 2024)",
    "NUS-HPC-AI-Lab/DATM utils/cfg.py L36 (num_eval 5), L42 (epoch_eval_train 1000); configs/*/ConvIN/IPC*.yaml "
    "batch_train 128; distill/DATM.py L369 (lr_net = the learned lr), soft cross-entropy",
    num_eval=5, epochs=1000, batch_size=128, lr=None, augmentation="dsa")
_PAD = dataclasses.replace(
    _DATM, reference="PAD (Li et al., 2024)",
    source="NUS-HPC-AI-Lab/PAD utils/cfg.py L36 (num_eval 5), L42 (epoch_eval_train 1000); "
           "configs/*/ConvIN/IPC*.yaml batch_train 128; distill/evaluation.py L99 (batch_train 128); distill/PAD.py L382 (the learned lr)")
_CORESET = dataclasses.replace(
    _DC, reference="coreset baselines, as evaluated for DC's paper (our choice: no paper states their protocol)")

PAPER_PROTOCOLS: dict[str, PaperProtocol] = {
    "dc": _DC, "dsa": _DSA, "dm": _DM, "cafe": _CAFE, "cafe_dsa": _CAFE_DSA, "datadam": _DATADAM, "mtt": _MTT,
    "datm": _DATM, "pad": _PAD,
    **{name: _CORESET for name in ("random", "herding", "k_center", "el2n", "grand", "forgetting", "uncertainty")},
}
"""Method name → its paper's evaluation protocol."""


def paper_method(protocol: str, method: str | None) -> str:
    """The method whose paper protocol ``protocol`` means: ``paper`` → ``method`` (the set's),
    ``paper:<m>`` → ``m``.

    Raises:
        ConfigError: an unknown protocol name, or a method without a paper protocol.
    """
    if protocol == "paper":
        if method not in PAPER_PROTOCOLS:
            raise ConfigError(f"the set's method {method!r} has no paper protocol: expected a set made by one of "
                              f"{', '.join(PAPER_PROTOCOLS)}, or name one with --protocol paper:METHOD "
                              "(or use --protocol ours)")
        return method
    if protocol.startswith("paper:") and protocol[len("paper:"):] in PAPER_PROTOCOLS:
        return protocol[len("paper:"):]
    raise ConfigError(f"protocol {protocol!r} is unknown: expected ours, paper, or paper:METHOD with METHOD one of "
                      f"{', '.join(PAPER_PROTOCOLS)}")


def dc_rule(dataset: str, model: str) -> str:
    """DC's ``get_daparam``: its augmentation for ConvNet-BN evaluation networks
    (:data:`DC_BN_STRATEGY`), on MNIST (:data:`DC_STRATEGY`), none otherwise."""
    if model == "convnet_bn":
        return DC_BN_STRATEGY
    return DC_STRATEGY if dataset == "mnist" else NO_AUGMENTATION


def eval_settings_for(protocol: str, *, method: str | None, dataset: str, model: str, dsa_strategy: str,
                      overrides: dict[str, Any] | None = None) -> EvalSettings:
    """The evaluation settings of ``protocol`` for a set of ``method`` on ``dataset`` evaluated on
    ``model``, then ``overrides`` (:class:`EvalSettings` keys: ``num_eval``, ``epochs``, ``lr``,
    ``batch_size``, ``dsa_strategy``, ``use_learned_lr``, …; None values ignored).

    ``ours``: :class:`EvalSettings` defaults with ``dsa_strategy``. ``paper`` / ``paper:<m>``: the
    method's :class:`PaperProtocol`; its DSA is ``dsa_strategy`` (the run's or the dataset's). The
    settings' ``protocol`` is ``ours`` or ``paper:<method>``.

    Raises:
        ConfigError: an unknown protocol, a method without a paper protocol, a bad override.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if protocol == "ours":
        return EvalSettings(**{"model": model, "dsa_strategy": dsa_strategy, **overrides})
    name = paper_method(protocol, method)
    p = PAPER_PROTOCOLS[name]
    augmentation, epochs = dsa_strategy, p.epochs
    if p.augmentation == "dc":
        augmentation = dc_rule(dataset, model)
        if augmentation == NO_AUGMENTATION:
            epochs = p.epochs_without_augmentation
    recipe = TrainRecipe(epochs=epochs, lr=p.lr, batch_size=p.batch_size, momentum=0.9, weight_decay=5e-4,
                         schedule="step_half", augmentation=augmentation)
    base = EvalSettings(model=model, num_eval=p.num_eval, recipe=recipe, use_learned_lr=p.lr is None,
                        protocol=f"paper:{name}")
    return dataclasses.replace(base, **overrides) if overrides else base


def run_eval_settings(config: DistillConfig, dataset: str, dsa_strategy: str) -> EvalSettings:
    """The evaluation of a ``distill`` run: ``config.eval_protocol`` ``ours`` (its ``num_eval``,
    ``eval_epochs``, ``eval_lr``, ``eval_batch``) or ``paper`` (its method's, :func:`eval_settings_for`),
    on its evaluation model, with ``dsa_strategy`` (the run's DSA strategy or the dataset's)."""
    if config.eval_protocol == "paper":
        return eval_settings_for("paper", method=config.method, dataset=dataset, model=config.resolved_eval_model,
                                 dsa_strategy=dsa_strategy)
    return EvalSettings(model=config.resolved_eval_model, num_eval=max(config.num_eval, 1), epochs=config.eval_epochs,
                        lr=config.eval_lr, batch_size=config.eval_batch, dsa_strategy=dsa_strategy)


__all__ = ["DC_BN_STRATEGY", "DC_STRATEGY", "PAPER_PROTOCOLS", "PROTOCOL_KEYS", "PaperProtocol", "dc_rule",
           "eval_settings_for", "paper_method", "run_eval_settings"]
