"""JEPA variants, one LightningModule per paper; shared machinery in `base`.

The names below are imported lazily (`jepa_lightning.lazy`): a run that builds one method imports that method's
module only, not every other method and what they need (the RL and LiDAR stacks, dm_control, ...)."""

from jepa_lightning.lazy import lazy_exports

__all__ = ["JEPAModule", "IJEPA", "LeJEPA", "VJEPA", "vjepa_masks", "SALT", "SALTTeacher", "DeepLinearSSL", "TJEPA", "SeqJEPA", "DMTJEPA",
           "LocalAggregationHead", "ACTJEPA", "TDJEPA", "FB",
           "UIJEPA", "ui_jepa_masks", "IntentDecoder", "IntentPredictionWriter", "ADLJEPA",
           "BEVDetector", "OccupancyMAE", "OccupancyDecoder", "SupervisedClassifier"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "act_jepa": ["ACTJEPA"],
    "adl_detection": ["BEVDetector"],
    "adl_jepa": ["ADLJEPA"],
    "base": ["JEPAModule"],
    "dmt_jepa": ["DMTJEPA", "LocalAggregationHead"],
    "fb": ["FB"],
    "ijepa": ["IJEPA"],
    "lejepa": ["LeJEPA"],
    "linear_theory": ["DeepLinearSSL"],
    "occupancy_mae": ["OccupancyDecoder", "OccupancyMAE"],
    "salt": ["SALT", "SALTTeacher"],
    "seq_jepa": ["SeqJEPA"],
    "supervised": ["SupervisedClassifier"],
    "t_jepa": ["TJEPA"],
    "td_jepa": ["TDJEPA"],
    "ui_intent": ["IntentDecoder", "IntentPredictionWriter"],
    "ui_jepa": ["UIJEPA", "ui_jepa_masks"],
    "vjepa": ["VJEPA", "vjepa_masks"],
})
