"""One LightningModule per stage: source (0), F1, F2, and every comparison row's stage."""

from cloudxfer.stages.auxiliary import AuxiliaryDistillation
from cloudxfer.stages.base import StageModule
from cloudxfer.stages.cycit import CycleTranslationAdaptation
from cloudxfer.stages.cyclegan import CycleGanPretrain
from cloudxfer.stages.dsan import SubdomainAdaptation
from cloudxfer.stages.fusion import LateFusionDistillation
from cloudxfer.stages.ogm_ge import OgmGeFusion
from cloudxfer.stages.restoration import RestorationPretrain
from cloudxfer.stages.source import SourceClassification
from cloudxfer.stages.spl import SelfPacedRestoration
from cloudxfer.stages.supervised import SupervisedClassification
from cloudxfer.stages.target import TargetDistillation
from cloudxfer.stages.ttl import TransitiveTransfer

__all__ = [
    "AuxiliaryDistillation",
    "CycleGanPretrain",
    "CycleTranslationAdaptation",
    "LateFusionDistillation",
    "OgmGeFusion",
    "RestorationPretrain",
    "SelfPacedRestoration",
    "SourceClassification",
    "StageModule",
    "SubdomainAdaptation",
    "SupervisedClassification",
    "TargetDistillation",
    "TransitiveTransfer",
]
