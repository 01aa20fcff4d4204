"""JEPA variants, one LightningModule per paper; shared machinery in `base`."""

from jepa_lightning.methods.act_jepa import ACTJEPA
from jepa_lightning.methods.adl_detection import BEVDetector
from jepa_lightning.methods.adl_jepa import ADLJEPA
from jepa_lightning.methods.base import JEPAModule
from jepa_lightning.methods.dmt_jepa import DMTJEPA, LocalAggregationHead
from jepa_lightning.methods.fb import FB
from jepa_lightning.methods.ijepa import IJEPA
from jepa_lightning.methods.linear_theory import DeepLinearSSL
from jepa_lightning.methods.occupancy_mae import OccupancyDecoder, OccupancyMAE
from jepa_lightning.methods.salt import SALT, SALTTeacher
from jepa_lightning.methods.seq_jepa import SeqJEPA
from jepa_lightning.methods.supervised import SupervisedClassifier
from jepa_lightning.methods.t_jepa import TJEPA
from jepa_lightning.methods.td_jepa import TDJEPA
from jepa_lightning.methods.ui_intent import IntentDecoder, IntentPredictionWriter
from jepa_lightning.methods.ui_jepa import UIJEPA, ui_jepa_masks
from jepa_lightning.methods.vjepa import VJEPA, vjepa_masks

__all__ = ["JEPAModule", "IJEPA", "VJEPA", "vjepa_masks", "SALT", "SALTTeacher", "DeepLinearSSL", "TJEPA", "SeqJEPA", "DMTJEPA",
           "LocalAggregationHead", "ACTJEPA", "TDJEPA", "FB",
           "UIJEPA", "ui_jepa_masks", "IntentDecoder", "IntentPredictionWriter", "ADLJEPA",
           "BEVDetector", "OccupancyMAE", "OccupancyDecoder", "SupervisedClassifier"]
