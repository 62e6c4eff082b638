"""ONNX export and an onnxruntime-backed drop-in for the PyTorch model.

``export_onnx(model, "model.onnx", input_size=(H, W))`` writes an ONNX file with one input
``images`` (B, 3, H, W) and one output per model output, named by the preset (``Preset.outputs``:
``output`` for pose, segmentation, face and classification models; ``aux`` and ``logits`` for HRNet-OCR's
``[aux, ocr]`` pair; ``heatmaps_and_tags`` and ``heatmaps_2x`` for HigherHRNet). The batch axis
is dynamic; height and width are dynamic too unless ``dynamic_hw=False`` (the fusion upsamples to
the exact size of the higher-resolution branch, so the graph is valid for any H, W >= 32). If the
exporter cannot make H/W dynamic for some model, the export falls back to static H/W and logs a
warning; the file's metadata (``hrnet.dynamic_hw``) says which one it is.

``OnnxModel("model.onnx")`` runs the file with onnxruntime (CPU) and takes and returns torch
tensors shaped like the PyTorch model's, so it can stand in for ``model(images)``.

Needs the ``onnx``, ``onnxscript`` (the dynamo exporter) and ``onnxruntime`` packages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .runtime import input_channels, task_settings

log = logging.getLogger(__name__)

INPUT_NAME = "images"
MIN_SIZE = 32  # HRNet downsamples by 32; smaller inputs are rejected by the backbone
META_PREFIX = "hrnet."

__all__ = [
    "INPUT_NAME", "MIN_SIZE", "OnnxModel", "export_onnx", "input_channels", "load_exported",
    "max_abs_diff", "task_settings",
]


EXPORTED_SUFFIXES = (".onnx", ".xml")


def is_exported_file(weights: str | Path) -> bool:
    """Whether ``weights`` names an exported model (ONNX, OpenVINO) rather than a checkpoint."""
    return Path(weights).suffix in EXPORTED_SUFFIXES


def load_exported(weights: str | Path) -> Any:
    """An onnxruntime-backed model for ``.onnx`` files, an OpenVINO one (fp32) for ``.xml`` files,
    else ``None`` (PyTorch checkpoints)."""
    suffix = Path(weights).suffix
    if suffix == ".onnx":
        return OnnxModel(weights)
    if suffix == ".xml":
        from .openvino_backend import OpenVinoModel

        return OpenVinoModel.load(weights)
    return None


def _output_names(model: nn.Module, outputs: Tensor | Sequence[Tensor]) -> tuple[list[str], bool]:
    """Names for the model's outputs (its preset's ``outputs``, e.g. OCR's ``aux``, ``logits``; else
    ``output`` / ``output0``, ``output1`` ...), and whether the model returns a list."""
    is_list = not isinstance(outputs, Tensor)
    outputs = list(outputs) if is_list else [outputs]
    if not all(isinstance(o, Tensor) for o in outputs):
        raise TypeError("export_onnx supports models returning a tensor or a list/tuple of tensors")
    preset = getattr(model, "preset", None)
    if preset is not None:
        from .models import get_preset

        named = get_preset(preset).outputs
        if len(named) == len(outputs):
            return list(named), is_list
    return (["output"] if not is_list else [f"output{i}" for i in range(len(outputs))]), is_list


def _dynamic_shapes(dynamic_batch: bool, dynamic_hw: bool) -> tuple[dict[int, Any]] | None:
    axes: dict[int, Any] = {}
    if dynamic_batch:
        axes[0] = torch.export.Dim("batch", min=1)
    if dynamic_hw:
        axes[2] = torch.export.Dim("height", min=MIN_SIZE)
        axes[3] = torch.export.Dim("width", min=MIN_SIZE)
    return (axes,) if axes else None


def _export_program(model: nn.Module, example: Tensor, names: list[str], dynamic_shapes: Any,
                    opset: int | None) -> Any:
    kwargs: dict[str, Any] = {"dynamo": True, "dynamic_shapes": dynamic_shapes, "input_names": [INPUT_NAME],
                              "output_names": names, "verbose": False}
    if opset is not None:
        kwargs["opset_version"] = opset
    return torch.onnx.export(model, (example,), **kwargs)


def export_onnx(model: nn.Module, path: str | Path, input_size: Sequence[int] | None = None, batch: int = 1,
                dynamic_batch: bool = True, dynamic_hw: bool = True, opset: int | None = None,
                settings: dict[str, Any] | None = None) -> Path:
    """Export ``model`` (run in eval mode) to ONNX at ``path`` and return the path.

    The example input is a random (``batch``, C, H, W) tensor, ``input_size`` = (H, W) defaulting
    to the preset's input size. The batch axis is dynamic when ``dynamic_batch``; H and W are
    dynamic when ``dynamic_hw`` (any H, W >= 32). Should the exporter fail with dynamic H/W, the
    model is exported again with static H/W and a warning is logged. ``opset=None`` uses the
    exporter's default opset. ``settings`` (:func:`hrnet.runtime.task_settings`) are stored for prediction
    (``OnnxModel.settings``). The file is written through a temporary file and renamed once
    :func:`onnx.checker.check_model` accepts it. Models up to 2 GB (one file, no external data).
    """
    import onnx

    path = Path(path)
    if input_size is None:
        preset = getattr(model, "preset", None)
        if preset is None:
            raise ValueError("export_onnx: pass input_size=(H, W) (the model has no preset to take it from)")
        from .models import get_preset

        input_size = get_preset(preset).input_size
    h, w = (int(s) for s in input_size)
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"export_onnx: input size {h}x{w} is too small; height and width must be >= {MIN_SIZE}")
    if batch < 1:
        raise ValueError(f"export_onnx: batch must be >= 1, got {batch}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    example = torch.randn(batch, input_channels(model), h, w, device=device)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            names, is_list = _output_names(model, model(example))
        try:
            program = _export_program(model, example, names, _dynamic_shapes(dynamic_batch, dynamic_hw), opset)
        except Exception as err:  # noqa: BLE001 - retried with static H/W, then re-raised
            if not dynamic_hw:
                raise
            log.warning("ONNX export with dynamic height/width failed (%s: %s); exporting with static %dx%d",
                        type(err).__name__, str(err).splitlines()[0] if str(err) else "", h, w)
            dynamic_hw = False
            program = _export_program(model, example, names, _dynamic_shapes(dynamic_batch, False), opset)
    finally:
        model.train(was_training)

    meta = {"preset": str(getattr(model, "preset", "")), "input_size": json.dumps([h, w]),
            "outputs": json.dumps(names), "output_is_list": json.dumps(is_list),
            "dynamic_batch": json.dumps(dynamic_batch), "dynamic_hw": json.dumps(dynamic_hw),
            "settings": json.dumps(settings or {})}
    program.model.metadata_props.update({META_PREFIX + k: v for k, v in meta.items()})

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        program.save(str(tmp), external_data=False)
        onnx.checker.check_model(str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (batch %s, H/W %s)", path, "dynamic" if dynamic_batch else batch,
             "dynamic" if dynamic_hw else f"static {h}x{w}")
    return path


class OnnxModel:
    """Run an exported file with onnxruntime: ``OnnxModel(path)(images)`` -> tensor(s) like the
    PyTorch model's (a list for list-output models such as HRNet-OCR).

    Inputs are converted to contiguous float32 numpy arrays; outputs come back as torch tensors on
    the input's device. ``eval()`` and ``to()`` are no-ops so it can replace an ``nn.Module`` in
    code that calls ``model.eval().to(device)`` and ``model(images)``.
    """

    def __init__(self, path: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",),
                 num_threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {self.path}")
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=list(providers))
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        raw = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k[len(META_PREFIX):]: v for k, v in raw.items() if k.startswith(META_PREFIX)}
        self.output_is_list = bool(json.loads(self.metadata.get("output_is_list", "false")))
        self.preset = self.metadata.get("preset") or None
        size = self.metadata.get("input_size")
        self.input_size: tuple[int, int] | None = tuple(json.loads(size)) if size else None  # type: ignore[assignment]
        self.settings: dict[str, Any] = json.loads(self.metadata.get("settings", "{}"))

    def __call__(self, images: Tensor) -> Tensor | list[Tensor]:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = self.session.run(self.output_names, {self.input_name: x})
        tensors = [torch.from_numpy(o).to(images.device) for o in outs]
        return tensors if self.output_is_list else tensors[0]

    def eval(self) -> "OnnxModel":
        return self

    def to(self, *args: Any, **kwargs: Any) -> "OnnxModel":
        return self

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, outputs={self.output_names})"


def max_abs_diff(model: nn.Module, exported: Callable[[Tensor], Any], images: Tensor) -> tuple[float, float]:
    """Largest absolute difference between PyTorch and an exported model's outputs (onnxruntime's
    :class:`OnnxModel`, or OpenVINO's) on ``images``, and the largest absolute PyTorch output value
    (the scale to judge the difference against)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model(images)
    finally:
        model.train(was_training)
    got = exported(images)
    refs = [ref] if isinstance(ref, Tensor) else list(ref)
    gots = [got] if isinstance(got, Tensor) else list(got)
    if len(refs) != len(gots) or any(r.shape != g.shape for r, g in zip(refs, gots)):
        raise RuntimeError(f"exported model's outputs {[tuple(g.shape) for g in gots]} differ in shape from PyTorch's "
                           f"{[tuple(r.shape) for r in refs]}")
    diff = max(float((r.float().cpu() - g.float().cpu()).abs().max()) for r, g in zip(refs, gots))
    scale = max(float(r.float().abs().max()) for r in refs)
    return diff, scale
