"""HRNet networks: blocks, the multi-resolution module and backbone, heads, presets, conversion."""

from .convert import CheckpointError, read_checkpoint, to_official, to_ours
from .heads import ClassificationHead, HigherHead, PoseHead, V2Head, V2pNeck, concat_upsampled
from .hrnet import BACKBONE_PARTS, HRModule, HRNet, HRNetBackbone
from .ocr import OCRHead
from .presets import PRESETS, LoadReport, Preset, create_model, get_preset, guess_preset, list_models, load_checkpoint
from .spec import HRNetSpec, StageSpec, derive_spec

__all__ = [
    "BACKBONE_PARTS", "PRESETS", "CheckpointError", "ClassificationHead", "HRModule", "HRNet", "HRNetBackbone", "HRNetSpec",
    "HigherHead", "LoadReport", "OCRHead", "PoseHead", "Preset", "StageSpec", "V2Head", "V2pNeck",
    "concat_upsampled", "create_model", "derive_spec", "get_preset", "guess_preset", "list_models",
    "load_checkpoint", "read_checkpoint", "to_official", "to_ours",
]
