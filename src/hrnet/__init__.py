"""hrnet: HRNet (Wang et al., TPAMI 2020) in PyTorch - exact official models and real pipelines.

``hrnet.create_model``, ``hrnet.list_models`` and ``hrnet.load_checkpoint`` are here; they and every submodule
(``hrnet.inference``, ``hrnet.export``, ``hrnet.tasks`` ...) load on first use, so ``import hrnet`` imports
no torch and ``hrnet.inference.prepare(...)`` works without importing ``hrnet.inference`` by hand.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import create_model, list_models, load_checkpoint

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models", "load_checkpoint"]

SUBMODULES = ("cli", "cpu", "demos", "export", "files", "inference", "keypoints", "models", "openvino_backend",
              "quantization", "runtime", "seeding", "synthetic", "tasks", "zoo")


def __getattr__(name: str) -> Any:
    if name in ("create_model", "list_models", "load_checkpoint"):
        return getattr(importlib.import_module(f"{__name__}.models"), name)
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *SUBMODULES})
