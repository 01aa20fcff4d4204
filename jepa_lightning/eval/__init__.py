"""Frozen evaluation: online linear probe + kNN + RankMe during training, attentive probe, checkpoint I/O.

The names below are imported lazily (`jepa_lightning.lazy`): a run imports the evaluations its recipe names, not
the RL rollouts, the LiDAR mAP or the sentence encoders of the others."""

from jepa_lightning.lazy import lazy_exports

__all__ = [
    "AttentiveProbe", "export_encoder", "load_encoder_weights", "read_encoder_state", "knn_accuracy",
    "knn_predict", "OnlineProbe", "RankMe", "effective_rank", "variance_shares", "TrainingFLOPs", "FrozenHeads", "FrozenProbes", "SeqJEPAEvaluation", "flop_counter", "step_flops",
    "RolloutEvaluation", "ZeroShotRollouts", "IntentSimilarity", "intent_similarity_scores",
    "BEVMeanAP", "CollapseMonitor", "MaskPictures",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "attentive_probe": ["AttentiveProbe"],
    "bev_map": ["BEVMeanAP"],
    "checkpoint": ["export_encoder", "load_encoder_weights", "read_encoder_state"],
    "collapse": ["CollapseMonitor"],
    "equivariance": ["SeqJEPAEvaluation"],
    "flops": ["TrainingFLOPs", "flop_counter", "step_flops"],
    "frozen_heads": ["FrozenHeads"],
    "frozen_probes": ["FrozenProbes"],
    "intent_similarity": ["IntentSimilarity", "intent_similarity_scores"],
    "knn": ["knn_accuracy", "knn_predict"],
    "online_probe": ["OnlineProbe"],
    "pictures": ["MaskPictures"],
    "rankme": ["RankMe", "effective_rank", "variance_shares"],
    "rollouts": ["RolloutEvaluation"],
    "zero_shot": ["ZeroShotRollouts"],
})
