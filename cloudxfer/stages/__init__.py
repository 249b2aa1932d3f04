"""One LightningModule per stage: source (0), auxiliary (F1), target (F2), supervised (SL)."""

from cloudxfer.stages.auxiliary import AuxiliaryDistillation
from cloudxfer.stages.base import StageModule
from cloudxfer.stages.source import SourceClassification
from cloudxfer.stages.supervised import SupervisedClassification
from cloudxfer.stages.target import TargetDistillation

__all__ = [
    "AuxiliaryDistillation",
    "SourceClassification",
    "StageModule",
    "SupervisedClassification",
    "TargetDistillation",
]
