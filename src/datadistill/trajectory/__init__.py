"""Expert trajectories (MTT family): training (experts.py), storage and loading (buffer.py)."""

from datadistill.trajectory.buffer import ExpertBuffer
from datadistill.trajectory.experts import Curriculum, ExpertSettings, train_experts

__all__ = ["Curriculum", "ExpertBuffer", "ExpertSettings", "train_experts"]
