"""Launching runs on clusters: sbatch rendering (`jepa-lightning slurm`) and requeue on preemption."""

from jepa_lightning.launch.requeue import RequeueOnSignal
from jepa_lightning.launch.slurm import SlurmJob

__all__ = ["RequeueOnSignal", "SlurmJob"]
