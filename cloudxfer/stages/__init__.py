"""One LightningModule per stage of the method: source (0), auxiliary (F1), target (F2)."""

from cloudxfer.stages.auxiliary import AuxiliaryDistillation
from cloudxfer.stages.base import StageModule
from cloudxfer.stages.source import SourceClassification
from cloudxfer.stages.target import TargetDistillation

__all__ = ["AuxiliaryDistillation", "SourceClassification", "StageModule", "TargetDistillation"]
