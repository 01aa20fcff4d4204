"""Frozen evaluation: online linear probe + kNN + RankMe during training, attentive probe, checkpoint I/O."""

from jepa_lightning.eval.attentive_probe import AttentiveProbe
from jepa_lightning.eval.bev_map import BEVMeanAP
from jepa_lightning.eval.checkpoint import export_encoder, load_encoder_weights, read_encoder_state
from jepa_lightning.eval.collapse import CollapseMonitor
from jepa_lightning.eval.equivariance import SeqJEPAEvaluation
from jepa_lightning.eval.flops import TrainingFLOPs, flop_counter, step_flops
from jepa_lightning.eval.frozen_heads import FrozenHeads
from jepa_lightning.eval.frozen_probes import FrozenProbes
from jepa_lightning.eval.intent_similarity import IntentSimilarity, intent_similarity_scores
from jepa_lightning.eval.knn import knn_accuracy, knn_predict
from jepa_lightning.eval.online_probe import OnlineProbe
from jepa_lightning.eval.pictures import MaskPictures
from jepa_lightning.eval.rankme import RankMe, effective_rank, variance_shares
from jepa_lightning.eval.rollouts import RolloutEvaluation
from jepa_lightning.eval.zero_shot import ZeroShotRollouts

__all__ = [
    "AttentiveProbe", "export_encoder", "load_encoder_weights", "read_encoder_state", "knn_accuracy",
    "knn_predict", "OnlineProbe", "RankMe", "effective_rank", "variance_shares", "TrainingFLOPs", "FrozenHeads", "FrozenProbes", "SeqJEPAEvaluation", "flop_counter", "step_flops",
    "RolloutEvaluation", "ZeroShotRollouts", "IntentSimilarity", "intent_similarity_scores",
    "BEVMeanAP", "CollapseMonitor", "MaskPictures",
]
