"""OpenVINO backend: the same model run by Intel's OpenVINO runtime on the CPU (fp32, bf16 or int8).

Why a second runtime: through PyTorch, every convolution call pays a fixed cost of about 60 µs in
PyTorch's oneDNN binding (attributes, descriptors and scratchpad rebuilt per call), about 17 ms per
pose_hrnet_w32 forward at any batch size, even compiled. OpenVINO builds each convolution's kernel
once per input shape, with the bias, residual add and ReLU fused in, and keeps it; on AMX CPUs its
bf16 path then runs pose_hrnet_w32 at 256x192 2.3-2.4x as fast as compiled bf16 PyTorch at batch 1
and 1.4-1.8x at batch 8 (see the README's benchmarks)::

    fast = hrnet.inference.prepare(model, "bf16", backend="openvino")
    heatmaps = fast(images)          # torch tensors in and out, like model(images)

    OpenVinoModel.convert(model).save("pose.xml")   # or `hrnet export openvino`
    fast = OpenVinoModel.load("pose.xml", "bf16")

The model is converted once from PyTorch (``openvino.convert_model`` traces it; batch, height and
width stay dynamic) and compiled for each new input shape on first use (static shapes run faster
here: 7.1 against 8.0 ms/image for pose_hrnet_w32 at batch 8; compiling takes well under a second).
A batch is split across parallel single-thread streams (:meth:`OpenVinoModel.chunks`) and the
outputs concatenated, so every output must be batch-first (all of this library's models' are).
Converting takes seconds to tens of seconds (tracing); :class:`ConversionCache` keeps converted models on
disk, keyed by the model's architecture and weights, and OpenVINO's own model cache (``CACHE_DIR``) keeps
each compiled shape, so a second run of the same weights starts without either (``HRNET_CACHE``).
Precision is set explicitly: OpenVINO's default on AMX CPUs is bf16 even for an fp32 model, so
``"fp32"`` asks for f32 inference (outputs within about 1e-6 of PyTorch). ``"bf16"`` falls back to
fp32 with a warning where the CPU has no native bf16. ``"int8"`` quantizes with NNCF (static
per-tensor activations, calibrated on batches you give) and reports ``int8_error`` like the torch
int8 path. Needs ``pip install openvino`` (``nncf`` too for int8): the ``openvino`` extra.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten, treespec_dumps, treespec_loads

from .runtime import PRECISIONS, input_channels

logger = logging.getLogger("hrnet.inference")

META_KEY = "hrnet"
MAX_SHAPES = 16
"""Compiled input shapes kept per model (least recently used dropped first)."""


def available(int8: bool = False) -> bool:
    """Whether the ``openvino`` package (and ``nncf``, for int8) is installed."""
    names = ("openvino", "nncf") if int8 else ("openvino",)
    return all(importlib.util.find_spec(name) is not None for name in names)


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise ImportError("the OpenVINO backend needs `pip install openvino` (or `pip install hrnet[openvino]`)") from err
    return openvino


def bf16_native() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX512-BF16 or AMX)."""
    return "BF16" in _openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def quantize_int8(ov_model: Any, calibration: Sequence[Tensor], max_error: float | None = None) -> Any:
    """An int8 copy of an OpenVINO model: NNCF post-training quantization (its "performance" preset:
    symmetric per-tensor activations, per-channel weights) with activation ranges from the input
    batches in ``calibration``, and NNCF's full bias correction rather than its fast default: on the
    demo-trained pose model it kept 98.2% of joints within 0.5 px of fp32 against 95.6% (the
    asymmetric "mixed" preset 95.4%, SmoothQuant 95.8%, leaving the last convolution in float 95.5%).

    ``max_error`` turns on NNCF's accuracy-aware quantization (``quantize_with_accuracy_control``): layers
    are put back into float, those that move the outputs most first, until the outputs on the calibration
    batches are within ``max_error`` relative RMS error of the float model's (the metric is
    ``1 - error``, NNCF's absolute drop bound ``max_error``)."""
    try:
        import nncf
    except ImportError as err:
        raise ImportError("int8 with the OpenVINO backend needs `pip install nncf` (or `pip install hrnet[openvino]`)") from err
    arrays = [_to_numpy(batch) for batch in calibration]
    if not arrays:
        raise ValueError("OpenVINO int8: calibration is empty; give at least one NCHW input batch")
    if max_error is None:
        return nncf.quantize(ov_model, nncf.Dataset(arrays), subset_size=len(arrays), fast_bias_correction=False)
    float_model = _openvino().Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    references = [[np.asarray(out) for out in float_model(x).values()] for x in arrays]

    def agreement(compiled: Any, items: Iterable[tuple[Any, list[Any]]]) -> tuple[float, None]:
        squared = total = 0.0
        for x, reference in items:
            for out, ref in zip(compiled(x).values(), reference):
                squared += float(np.square(np.asarray(out, np.float64) - ref).sum())
                total += float(np.square(ref, dtype=np.float64).sum())
        return 1.0 - (squared / max(total, 1e-30)) ** 0.5, None

    validation = nncf.Dataset(list(zip(arrays, references)), lambda item: item[0])
    return nncf.quantize_with_accuracy_control(ov_model, nncf.Dataset(arrays), validation, agreement,
                                               max_drop=max_error, subset_size=len(arrays),
                                               fast_bias_correction=False)


def _to_numpy(images: Tensor) -> Any:
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"OpenVinoModel: expected an NCHW image tensor, got {type(images).__name__} "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else ''}")
    return images.detach().to("cpu", torch.float32).contiguous().numpy()


def default_cache_dir() -> Path | None:
    """Where converted and compiled models are kept: ``$HRNET_CACHE`` (``off`` keeps none), else
    ``$XDG_CACHE_HOME/hrnet``, else ``~/.cache/hrnet``."""
    chosen = os.environ.get("HRNET_CACHE")
    if chosen is not None:
        return None if chosen.lower() in ("off", "none", "0", "") else Path(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hrnet"


def _versioned_digest(int8: bool) -> Any:
    """A digest seeded with the versions that change a conversion: hrnet, torch, OpenVINO (and NNCF for int8)."""
    from . import __version__

    digest = hashlib.blake2b(digest_size=16)
    versions = [__version__, torch.__version__, _openvino().__version__]
    if int8:
        versions.append(importlib.import_module("nncf").__version__)
    digest.update("\0".join(versions).encode() + b"\0")
    return digest


class ConversionCache:
    """Converted OpenVINO models on disk: ``root/openvino/<key>/model.xml`` (+ ``.bin``), where the key
    digests the library versions and either the model's class, module tree and every state-dict tensor
    (:meth:`model_key`; for int8 the calibration batches too) or a checkpoint file's bytes with the preset
    and head it builds (:meth:`file_key`, which needs no model built), so any change of weights, head,
    code or library converts anew. The compiled blobs of each input shape and precision go to ``root/openvino/compiled``
    (OpenVINO's ``CACHE_DIR``, which keys them by model, shape and settings itself).

    Safe under concurrent runs: a model is written into a private temporary folder and renamed into
    place in one step; when two runs convert the same model, the first rename wins and the other
    drops its copy. Delete the folder at any time to reclaim the space.
    """

    def __init__(self, root: str | Path) -> None:
        self.folder = Path(root) / "openvino"
        self.compiled = self.folder / "compiled"

    @staticmethod
    def model_key(model: nn.Module, int8: bool, calibration: Sequence[Tensor] = (), variant: str = "") -> str:
        """The digest naming ``model``'s converted form (about 0.2 s for pose_hrnet_w32's 114 MB); ``variant``
        names conversion options (int8's ``max_error``)."""
        digest = _versioned_digest(int8)
        for text in ("int8" if int8 else "float", variant, type(model).__qualname__, repr(model)):
            digest.update(text.encode() + b"\0")
        tensors = [(name, tensor) for name, tensor in model.state_dict().items()]
        tensors += [(f"calibration.{i}", batch) for i, batch in enumerate(calibration)]
        for name, tensor in tensors:
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    @staticmethod
    def file_key(weights: str | Path, name: str, head_args: dict[str, Any]) -> str:
        """The digest naming the float conversion of preset ``name`` (``head_args``) with the checkpoint file
        ``weights`` loaded: its bytes, not its path or date, so a copied or renamed file still hits."""
        digest = _versioned_digest(False)
        digest.update(f"float\0{name}\0{json.dumps(head_args, sort_keys=True)}\0".encode())
        with open(weights, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
        return digest.hexdigest()

    def load(self, key: str, precision: str, num_threads: int | None = None) -> OpenVinoModel | None:
        """The model stored under ``key``, run in ``precision`` (``None`` when there is none)."""
        path = self.folder / key / "model.xml"
        if not path.is_file():
            return None
        model = OpenVinoModel.load(path, precision, num_threads)
        model.cache_dir = self.compiled
        logger.info("OpenVINO: converted model read from the cache (%s)", path.parent)
        return model

    def store(self, key: str, model: OpenVinoModel) -> None:
        """Write ``model`` under ``key`` (atomically; a copy another run stored first is kept). A cache folder that
        cannot be written is a warning, not a failure: the model runs uncached."""
        partial = self.folder / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            model.save(partial / "model.xml")
        except OSError as err:
            logger.warning("OpenVINO: conversion cache %s not writable (%s); running without it", self.folder, err)
            shutil.rmtree(partial, ignore_errors=True)
            return
        try:
            partial.rename(self.folder / key)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
        model.cache_dir = self.compiled


class OpenVinoModel:
    """A model run by OpenVINO on the CPU: ``OpenVinoModel(...)(images)`` -> tensor(s) structured like
    the PyTorch model's outputs (float32, on the input's device).

    Build it with :meth:`convert` (from an ``nn.Module``), :meth:`load` (a saved ``.xml``) or
    :func:`hrnet.inference.prepare` with ``backend="openvino"``. Attributes: ``precision`` (the path
    actually taken), ``int8_error`` (int8 only), ``preset`` (when the model had one), ``input_size``
    (the model's intended (H, W) where known, e.g. from ``hrnet export openvino``), ``settings`` (the
    checkpoint's ``Task.settings`` in :mod:`hrnet.tasks.registry`, from ``hrnet export openvino``), ``num_threads``
    and ``streams`` (see :meth:`chunks`; settable).
    ``cache_dir``: OpenVINO's ``CACHE_DIR`` for the compiled shapes (``None``: compile each time).
    ``eval()`` and ``to()`` are no-ops so it can stand in for an ``nn.Module`` in prediction code.
    """

    def __init__(self, ov_model: Any, spec: TreeSpec, precision: str = "fp32", preset: str | None = None,
                 num_threads: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"OpenVinoModel: precision must be one of {PRECISIONS}, got {precision!r}")
        self.ov_model = ov_model
        self.spec = spec
        self.precision = precision
        self.preset = preset
        self.num_threads = num_threads or torch.get_num_threads()
        self.streams: int | None = None
        self.int8_error: float | None = None
        self.input_size: tuple[int, int] | None = None
        self.settings: dict[str, Any] = {}
        self.cache_dir: Path | None = None
        self.float_precision = "bf16" if precision != "fp32" and bf16_native() else "f32"
        """OpenVINO's ``INFERENCE_PRECISION_HINT``: what the layers not in int8 run in."""
        if precision == "bf16" and self.float_precision == "f32":
            logger.warning("OpenVINO: bf16 requested but this CPU has no native bf16; falling back to fp32")
            self.precision = "fp32"
        self._core = _openvino().Core()
        self._requests: OrderedDict[tuple[tuple[int, ...], int], list[Any]] = OrderedDict()

    @classmethod
    def convert(cls, model: nn.Module, precision: str = "fp32", example: Tensor | None = None,
                calibration: Iterable[Tensor] | None = None, num_threads: int | None = None,
                max_error: float | None = None) -> OpenVinoModel:
        """Trace ``model`` (eval mode, on the CPU) into OpenVINO with dynamic batch, height and width.

        ``example`` is the tracing input (default: one 256x256 image); ``calibration`` (int8 only)
        yields NCHW input batches for the activation ranges, and its first batch measures
        ``int8_error`` against PyTorch fp32; ``max_error`` (int8 only): :func:`quantize_int8`'s."""
        if precision not in PRECISIONS:
            raise ValueError(f"OpenVinoModel: precision must be one of {PRECISIONS}, got {precision!r}")
        if (precision == "int8") != (calibration is not None):
            raise ValueError("OpenVINO int8 needs calibration=<iterable of NCHW input batches>; fp32/bf16 take none")
        ov = _openvino()
        model = model.eval()
        example = torch.randn(1, input_channels(model), 256, 256) if example is None else example.detach().float().cpu()
        with torch.no_grad():
            _, spec = tree_flatten(model(example))
            ov_model = ov.convert_model(model, example_input=example, input=[(-1, example.shape[1], -1, -1)])
        result = cls(ov_model, spec, precision, getattr(model, "preset", None), num_threads)
        if calibration is not None:
            batches = list(calibration)
            result.ov_model = quantize_int8(ov_model, batches, max_error)
            from .quantization import relative_rms_error

            with torch.no_grad():
                reference = model(batches[0].float().cpu())
            result.int8_error = relative_rms_error(reference, result(batches[0]))
        return result

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (``.xml``) and its ``.bin`` weights, uncompressed, with what :meth:`load` needs."""
        path = Path(path)
        if path.suffix != ".xml":
            raise ValueError(f"OpenVinoModel.save: {path} should end in .xml (the weights go next to it in .bin)")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"spec": treespec_dumps(self.spec), "preset": self.preset, "quantized": self.precision == "int8",
                "int8_error": self.int8_error, "input_size": self.input_size, "settings": self.settings}
        self.ov_model.set_rt_info(json.dumps(meta), [META_KEY])
        _openvino().save_model(self.ov_model, str(path), compress_to_fp16=False)
        return path

    @classmethod
    def load(cls, path: str | Path, precision: str = "fp32", num_threads: int | None = None) -> OpenVinoModel:
        """Read a model written by :meth:`save`. An int8 file runs int8 whatever ``precision`` says;
        ``precision`` picks fp32 or bf16 for a float file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"OpenVINO model not found: {path} (expected an .xml written by "
                                    "`hrnet export openvino`)")
        ov_model = _openvino().Core().read_model(str(path))
        if not ov_model.has_rt_info([META_KEY]):
            raise ValueError(f"{path}: no hrnet metadata; write it with `hrnet export openvino`")
        meta = json.loads(ov_model.get_rt_info([META_KEY]).astype(str))
        if meta["quantized"]:
            precision = "int8"
        elif precision == "int8":
            raise ValueError(f"{path} holds a float model; export it with --precision int8 to run int8")
        result = cls(ov_model, treespec_loads(meta["spec"]), precision, meta["preset"], num_threads)
        result.int8_error = meta.get("int8_error")
        result.input_size = tuple(meta["input_size"]) if meta.get("input_size") else None
        result.settings = meta.get("settings") or {}
        return result

    def with_precision(self, precision: str) -> OpenVinoModel:
        """The same float model run in another precision (``"fp32"`` or ``"bf16"``; int8 needs
        calibration: :meth:`convert`)."""
        if self.precision == "int8" or precision == "int8":
            raise ValueError("OpenVinoModel.with_precision: int8 comes from convert(..., calibration=...), "
                             f"not from a {self.precision} model")
        result = OpenVinoModel(self.ov_model, self.spec, precision, self.preset, self.num_threads)
        result.input_size, result.streams, result.settings = self.input_size, self.streams, self.settings
        result.cache_dir = self.cache_dir
        return result

    def chunks(self, batch: int) -> list[int]:
        """How a batch is split across parallel inference streams: ``min(batch, streams)`` near-equal
        chunks, with ``streams`` defaulting to ``num_threads`` (one thread per stream). Several
        single-thread streams on parts of a batch beat one stream using every thread on all of it
        (pose_hrnet_w32, batch 8 on 2 cores: 8-9% faster in fp32 and bf16): each stream's small
        kernels and the work between them no longer wait for the other cores. Batch 1 runs as one
        stream with all threads (lowest latency)."""
        streams = max(1, min(batch, self.streams or self.num_threads))
        base, extra = divmod(batch, streams)
        return [base + 1] * extra + [base] * (streams - extra)

    def _pool(self, shape: tuple[int, ...], streams: int, count: int) -> list[Any]:
        """``count`` inference requests for input ``shape``, compiled for ``streams`` parallel streams."""
        key = (shape, streams)
        pool = self._requests.get(key)
        if pool is None:
            model = self.ov_model.clone()
            model.reshape(list(shape))
            config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.float_precision,
                                      "INFERENCE_NUM_THREADS": self.num_threads}
            config.update({"PERFORMANCE_HINT": "LATENCY"} if streams == 1 else {"NUM_STREAMS": streams})
            if self.cache_dir is not None:
                config["CACHE_DIR"] = str(self.cache_dir)
            pool = [self._core.compile_model(model, "CPU", config).create_infer_request()]
            self._requests[key] = pool
            if len(self._requests) > MAX_SHAPES:
                self._requests.popitem(last=False)
        while len(pool) < count:
            pool.append(pool[0].get_compiled_model().create_infer_request())
        self._requests.move_to_end(key)
        return pool[:count]

    def __call__(self, images: Tensor) -> Any:
        x = _to_numpy(images)
        sizes = self.chunks(x.shape[0])
        if len(sizes) == 1:
            request = self._pool(tuple(x.shape), 1, 1)[0]
            results = request.infer({0: x})
            outs = [torch.from_numpy(results[output]) for output in request.model_outputs]
        else:
            requests = []
            for size in sorted(set(sizes), reverse=True):
                requests += self._pool((size, *x.shape[1:]), len(sizes), sizes.count(size))
            start = 0
            for request, size in zip(requests, sizes):
                request.start_async({0: x[start:start + size]})
                start += size
            for request in requests:
                request.wait()
            outs = [torch.from_numpy(np.concatenate([r.get_output_tensor(i).data for r in requests]))
                    for i in range(len(requests[0].model_outputs))]
        return tree_unflatten([out.to(images.device) for out in outs], self.spec)

    def compiled_models(self) -> list[Any]:
        """The OpenVINO ``CompiledModel`` of every input shape compiled so far (see :func:`hrnet.cpu.openvino_kernels`)."""
        return [pool[0].get_compiled_model() for pool in self._requests.values()]

    def eval(self) -> OpenVinoModel:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OpenVinoModel:
        return self

    def __repr__(self) -> str:
        return (f"OpenVinoModel(precision={self.precision!r}, preset={self.preset!r}, "
                f"shapes={[shape for shape, _ in self._requests]})")


__all__ = ["ConversionCache", "OpenVinoModel", "available", "bf16_native", "default_cache_dir", "quantize_int8"]
