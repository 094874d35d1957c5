"""Training networks: the SGD recipe every trainer follows (:mod:`.recipe`), the one training loop
(:mod:`.loop`: :func:`fit_network`, with hooks for what differs between trainers, and the
mini-batch epoch the bi-level methods share), K networks trained together under ``torch.vmap``
(:mod:`.vmap`), and accuracy measurement (:mod:`.metrics`)."""

from datadistill.training.loop import FitState, Hooks, classification_loss, fit_network, make_optimiser, train_epoch
from datadistill.training.metrics import accuracy, class_correct, num_classes, per_class_percent
from datadistill.training.recipe import (FLAT_KEYS, NO_AUGMENTATION, SCHEDULES, TrainRecipe, flat_type_hints,
                                         holds_recipe, lr_at, recipe_settings_dict)
from datadistill.training.vmap import can_vectorise, fit_networks_vectorised

__all__ = ["FLAT_KEYS", "NO_AUGMENTATION", "SCHEDULES", "FitState", "Hooks", "TrainRecipe", "accuracy", "can_vectorise",
           "class_correct", "classification_loss", "fit_network", "fit_networks_vectorised", "flat_type_hints",
           "holds_recipe", "lr_at",
           "make_optimiser", "num_classes", "per_class_percent", "recipe_settings_dict", "train_epoch"]
