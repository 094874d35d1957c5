"""Expert trajectories (MTT family): training, storage, loading."""

from datadistill.trajectory.experts import Curriculum, ExpertBuffer, ExpertSettings, train_experts

__all__ = ["Curriculum", "ExpertBuffer", "ExpertSettings", "train_experts"]
