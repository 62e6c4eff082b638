"""hrnet: HRNet (Wang et al., TPAMI 2020) in PyTorch - exact official models and real pipelines."""

from .models import create_model, list_models, load_checkpoint

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models", "load_checkpoint"]
