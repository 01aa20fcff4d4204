"""Launching runs on clusters: sbatch rendering (`jepa-lightning slurm`) and requeue on preemption.

The names below are imported lazily (`jepa_lightning.lazy`): every run imports the requeue callback, only
`jepa-lightning slurm` the sbatch renderer."""

from jepa_lightning.lazy import lazy_exports

__all__ = ["RequeueOnSignal", "SlurmJob"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "requeue": ["RequeueOnSignal"],
    "slurm": ["SlurmJob"],
})
