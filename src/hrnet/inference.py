"""Fast inference: fold BatchNorm into convolutions, channels_last, bf16 autocast, int8, torch.compile.

:func:`prepare` turns any model of this library (``create_model(...)``, with or without weights)
into a module for inference whose outputs mean the same as the original's::

    model = hrnet.create_model("seg_hrnet_w48_ocr", "weights.pth")
    fast = prepare(model, precision="bf16", compile=True)
    with torch.inference_mode():
        logits = fast(images)  # float32, same structure as model(images)

    int8 = prepare(model, precision="int8", calibration=[batch1, batch2])  # CPU; experimental

The original model is never modified: :func:`fold_batchnorm` works on a deep copy. The returned
:class:`InferenceModel` is in eval mode, its parameters do not require grad, and it is meant to be
called under :func:`torch.inference_mode` (or ``torch.no_grad``); calling ``.train()`` on it makes
no sense, the BatchNorms are gone.

What is folded (by module structure, no tracing):

* ``convN`` / ``bnN`` attribute pairs (N = 1, 2, 3) of :class:`~hrnet.models.blocks.BasicBlock`,
  :class:`~hrnet.models.blocks.Bottleneck` and the :class:`~hrnet.models.hrnet.HRNetBackbone`
  stem, whose forwards apply ``bnN(convN(x))`` directly (see :data:`ATTRIBUTE_PAIRS`);
* in a plain :class:`torch.nn.Sequential`, a ``Conv2d`` immediately followed by a
  ``BatchNorm2d`` (shortcuts, fusion paths, transitions, ``last_layer``, the classification
  head, OCR's ``conv3x3_ocr`` / ``aux_head``), and a ``Conv2d`` followed by a nested
  ``Sequential`` whose *first* child is a ``BatchNorm2d`` (OCR's ``[conv, Sequential(BN, ReLU)]``
  in ``ocr_distri_head``): the nested BN becomes ``Identity``;
* a ``ConvTranspose2d`` (``groups == 1``) followed by a ``BatchNorm2d`` in a ``Sequential``
  (HigherHRNet's deconvolution).

Not folded: a BatchNorm2d without running statistics (``track_running_stats=False``, it
normalises by batch statistics even in eval), grouped transposed convolutions, and any
conv/BN pair of a user module that is not in :data:`ATTRIBUTE_PAIRS` or a plain ``Sequential``
(those are left as they are; the result is still correct, just not folded).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import logging
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .models.blocks import BasicBlock, Bottleneck
from .models.hrnet import HRNetBackbone
from .runtime import BACKENDS, PRECISIONS

if TYPE_CHECKING:
    from .openvino_backend import OpenVinoModel

logger = logging.getLogger("hrnet.inference")


INT8_MAX_ERROR = 0.1
"""Above this relative RMS error against fp32 on a calibration batch (:func:`hrnet.quantization.int8_error`)
:func:`prepare` warns that int8 does not suit the model, and :class:`CalibrateThenInt8` runs bf16 instead."""

ATTRIBUTE_PAIRS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    HRNetBackbone: (("conv1", "bn1"), ("conv2", "bn2")),
}
"""Classes whose forward computes ``bn(conv(x))`` for these attribute pairs (subclasses included)."""


def _foldable_bn(bn: nn.Module) -> bool:
    return isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None


def _fold_into(conv: nn.Module, bn: nn.BatchNorm2d) -> bool:
    """Fold eval-mode ``bn`` into ``conv`` in place; ``False`` (nothing changed) if unsupported.

    With s = gamma / sqrt(var + eps): W' = W * s (per output channel), b' = (b - mean) * s + beta.
    Computed in float64, stored in the conv's dtype.
    """
    if not _foldable_bn(bn):
        return False
    if isinstance(conv, nn.Conv2d):
        out_dim = 0
    elif isinstance(conv, nn.ConvTranspose2d) and conv.groups == 1:
        out_dim = 1  # ConvTranspose2d weight: (in, out, kH, kW)
    else:
        return False
    weight = conv.weight
    if weight.shape[out_dim] != bn.num_features:
        return False
    with torch.no_grad():
        w = weight.double()
        mean, var = bn.running_mean.double(), bn.running_var.double()
        gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
        beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + bn.eps)
        shape = [1] * w.dim()
        shape[out_dim] = -1
        new_w = (w * scale.reshape(shape)).to(weight.dtype)
        new_b = ((bias - mean) * scale + beta).to(weight.dtype)
    conv.weight = nn.Parameter(new_w, requires_grad=False)
    conv.bias = nn.Parameter(new_b, requires_grad=False)
    return True


def _is_plain_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _fold_sequential(seq: nn.Sequential) -> int:
    folded = 0
    names = list(seq._modules)
    for first, second in zip(names, names[1:]):
        conv, nxt = seq._modules[first], seq._modules[second]
        if not isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        if isinstance(nxt, nn.BatchNorm2d):
            if _fold_into(conv, nxt):
                setattr(seq, second, nn.Identity())
                folded += 1
        elif _is_plain_sequential(nxt) and len(nxt) > 0 and isinstance(nxt[0], nn.BatchNorm2d):
            inner = next(iter(nxt._modules))
            if _fold_into(conv, nxt._modules[inner]):
                setattr(nxt, inner, nn.Identity())
                folded += 1
    return folded


def _fold_attributes(module: nn.Module) -> int:
    folded = 0
    for cls, pairs in ATTRIBUTE_PAIRS.items():
        if not isinstance(module, cls):
            continue
        for conv_name, bn_name in pairs:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and _fold_into(conv, bn):
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every foldable conv + BN pair folded.

    Eval-mode outputs are unchanged (up to float rounding). The copy is for inference only: its
    state dict no longer matches the checkpoint format (BN entries are gone, convs gain biases)
    and training it would train a different network. See the module docstring for what is folded.
    """
    folded_model = copy.deepcopy(model).eval()
    count = 0
    for module in list(folded_model.modules()):
        count += _fold_attributes(module)
        if _is_plain_sequential(module):
            count += _fold_sequential(module)
    folded_model.requires_grad_(False)
    left = sum(isinstance(m, nn.BatchNorm2d) for m in folded_model.modules())
    logger.debug("fold_batchnorm: folded %d BatchNorm2d, %d left", count, left)
    return folded_model


def count_batchnorm(model: nn.Module) -> int:
    """Number of :class:`torch.nn.BatchNorm2d` modules left in ``model``."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device`` (CUDA with bf16, or a CPU with
    AVX512-BF16 / AMX as oneDNN reports it)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def _to_output(value: Any, to_float: bool) -> Any:
    """Outputs back to float32 (if autocast ran) and the default contiguous layout, keeping the
    structure (tensor, list, tuple, dict)."""
    if isinstance(value, Tensor):
        if to_float and value.is_floating_point():
            value = value.float()
        return value.contiguous()
    if isinstance(value, Mapping):
        return type(value)((k, _to_output(v, to_float)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        items = [_to_output(v, to_float) for v in value]
        return type(value)(items) if not hasattr(value, "_fields") else type(value)(*items)
    return value


def _drop_self_guards(entries: list[Any]) -> list[bool]:
    """Dynamo guard filter: keep every guard except those on the compiled method's ``self``."""
    return [not (entry.name == "self" or entry.name.startswith(("self.", "self["))) for entry in entries]


def _with_own_code(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` bound to a fresh copy of its code object. Dynamo keeps compiled graphs per code
    object, so this gives each instance its own cache: with :func:`_drop_self_guards` a second
    instance would otherwise run the first one's graph (and its frozen weights)."""
    func = method.__func__
    fresh = types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__, func.__defaults__,
                               func.__closure__)
    return types.MethodType(fresh, method.__self__)


class InferenceModel(nn.Module):
    """Runs a prepared model: channels_last input, optional bf16 autocast, float32 outputs.

    Attributes: ``model`` (the folded model, or for int8 its quantized graph), ``precision``
    (``"fp32"``, ``"bf16"`` or ``"int8"``, the path actually taken), ``channels_last``, ``compiled``,
    ``device_type``, ``int8_error`` (int8 only, else ``None``: relative RMS error against fp32 on the
    first calibration batch, :func:`hrnet.quantization.int8_error`), and ``preset`` when the original
    model has one. Outputs have the original model's structure, dtype float32 and the default
    (contiguous) memory format.
    """

    def __init__(self, model: nn.Module, precision: str, channels_last: bool, device_type: str) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.channels_last = channels_last
        self.device_type = device_type
        self._compiled: Callable[..., Any] | None = None
        self.int8_error: float | None = None

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def compile_inductor(self, options: Mapping[str, Any] | None = None) -> None:
        """Compile :meth:`run` with inductor: static shapes, weights frozen into the graph.

        Freezing and the C++ wrapper are inductor *config* switches that ``torch.compile(options=...)``
        does not reach in time (freezing is decided before those options apply), so every call of
        the compiled function runs inside ``torch._inductor.config.patch`` with them set. Each new
        input shape compiles once (``dynamic=False``: shape-specialised kernels are faster).

        Dynamo's guards on this module's own tree (``self...``: about 15,000 checks of submodule
        hooks, parameter identities and constants for a W32, about 1 ms per call) are dropped: the
        weights are frozen into the compiled code anyway, so a prepared model is immutable by
        contract, and each instance compiles its own copy of :meth:`run` (its own cache). Guards on
        the inputs (shape, dtype, layout) and on global state (grad mode, autocast) stay, so a new
        input shape still recompiles.
        """
        settings = {"guard_filter_fn": _drop_self_guards, **dict(options or {})}
        self._compiled = torch.compile(_with_own_code(self.run), backend="inductor", dynamic=False, options=settings)

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is None:
            return self.run(x, *args, **kwargs)
        from torch._inductor import config as inductor_config

        with inductor_config.patch(freezing=True, cpp_wrapper=self.device_type == "cpu"):
            return self._compiled(x, *args, **kwargs)

    def run(self, x: Tensor, *args: Any, **kwargs: Any) -> Any:
        """The uncompiled forward: channels_last input, autocast if bf16, float32 contiguous outputs."""
        if self.channels_last and isinstance(x, Tensor) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "bf16":
            with torch.autocast(self.device_type, dtype=torch.bfloat16):
                out = self.model(x, *args, **kwargs)
            return _to_output(out, to_float=True)
        return _to_output(self.model(x, *args, **kwargs), to_float=False)


class CalibrateThenInt8(nn.Module):
    """int8 for a stream of inputs with no calibration set at hand (``hrnet predict --precision int8``).

    The first ``batches`` calls run ``model`` as it is (fp32, exact results) and keep their inputs;
    the next call quantizes on those inputs (:func:`prepare` with ``precision="int8"``) and every
    call from then on runs int8, unless int8 moves the outputs on the first recorded batch by more
    than ``max_error`` (relative RMS, :func:`hrnet.quantization.int8_error`): then it warns and runs
    ``prepare(model, "bf16", compile=True)`` instead (which is fp32 where bf16 is not native).
    ``backend`` and ``cache`` are :func:`prepare`'s (``"openvino"``: NNCF int8, OpenVINO bf16 as the fallback).
    Attributes: ``int8`` (the int8 model once built, also when rejected) and ``prepared`` (the
    model that runs after calibration).
    """

    def __init__(self, model: nn.Module, batches: int = 8, channels_last: bool = True,
                 max_error: float = INT8_MAX_ERROR, backend: str = "torch", cache: str | Path | bool = True) -> None:
        super().__init__()
        if batches < 1:
            raise ValueError(f"CalibrateThenInt8: batches must be >= 1, got {batches}")
        if backend == "torch":
            check_torch_int8_cpu()
        self.model = model.eval()
        self.batches = batches
        self.channels_last = channels_last
        self.max_error = max_error
        self.backend = backend
        self.cache = cache
        self.int8: InferenceModel | OpenVinoModel | None = None
        self.prepared: InferenceModel | OpenVinoModel | None = None
        self._seen: list[Tensor] = []
        if hasattr(model, "preset"):
            self.preset = model.preset

    def forward(self, x: Tensor) -> Any:
        if self.prepared is None and len(self._seen) < self.batches:
            self._seen.append(x.detach().clone())
            return self.model(x)
        if self.prepared is None:
            count = sum(batch.shape[0] for batch in self._seen)
            logger.info("int8: calibrating on the first %d inputs (%d batches)", count, len(self._seen))
            self.int8 = prepare(self.model, "int8", channels_last=self.channels_last, calibration=self._seen,
                                backend=self.backend, cache=self.cache)
            self._seen = []
            error = self.int8.int8_error
            if error is not None and error > self.max_error:
                logger.warning("int8: relative RMS error %.3f against fp32 exceeds %.2f; running bf16 instead",
                               error, self.max_error)
                self.prepared = (prepare(self.model, "bf16", backend="openvino", cache=self.cache)
                                 if self.backend == "openvino" else
                                 prepare(self.model, "bf16", compile=True, channels_last=self.channels_last))
            else:
                self.prepared = self.int8
        return self.prepared(x)


MALLOC_SETTINGS: dict[str, tuple[int, int]] = {
    "M_MXFAST": (1, 0),
    "M_TRIM_THRESHOLD": (-1, 1 << 30),
    "M_MMAP_THRESHOLD": (-3, 32 << 20),
}
"""glibc ``mallopt`` parameter numbers and the values :func:`tune_malloc` sets."""


def tune_malloc() -> bool:
    """Tune glibc's ``malloc`` of this process for inference loops; ``False`` (nothing changed)
    where the C library is not glibc.

    Every convolution call through PyTorch's oneDNN bindings allocates and frees a few aligned
    blocks of kilobytes to megabytes (primitive attributes, memory descriptors, scratchpad, the
    output), and eager models allocate every activation. With glibc's defaults each large request
    first consolidates the fast bins and blocks over 128 KiB come from fresh ``mmap`` pages. On a
    2-core CPU this took 5-9% of a compiled bf16 pose_hrnet_w32's time (measured in one process,
    alternating settings). timm's eager fp32 HRNet ran 14% faster at batch 8 with the tuning
    (``benchmarks/inference.py --tune-malloc`` against a run without).
    Settings (:data:`MALLOC_SETTINGS`): no fast bins, ``mmap`` only above 32 MiB, and freed heap
    memory is kept for reuse rather than returned to the system until 1 GiB is free at the top,
    so the process's resident memory stays near its peak. Process-wide and not undone; call it
    once in a process that runs inference (``hrnet predict`` and the benchmark do).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError, TypeError):
        logger.info("tune_malloc: the C library is not glibc; malloc left as it is")
        return False
    applied = all(mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS.values())
    if not applied:
        logger.warning("tune_malloc: glibc rejected a setting of %s", MALLOC_SETTINGS)
    return applied


def check_torch_int8_cpu() -> None:
    """A one-line error where int8 through PyTorch would be wrong: a CPU without VNNI / AMX
    (:func:`hrnet.cpu.int8_dot_products`); the OpenVINO backend's int8 does not have the problem."""
    from .cpu import cpu_name, int8_dot_products

    if not int8_dot_products():
        raise ValueError(f"int8 through PyTorch needs a CPU with VNNI or AMX int8 instructions; this {cpu_name()} has "
                         "neither, and its AVX2 int8 convolutions saturate: use --backend openvino "
                         "(backend='openvino') for int8")


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _report_int8_error(error: float, path: str) -> None:
    """Log int8's relative RMS error against fp32 on the first calibration batch, and warn above
    :data:`INT8_MAX_ERROR` (both backends)."""
    logger.info("prepare: int8 (%s), float32 outputs; relative RMS error against fp32 on the first calibration "
                "batch: %.4f", path, error)
    if error > INT8_MAX_ERROR:
        logger.warning("prepare: int8 changes this model's outputs by %.3f (relative RMS, above %.2f) on the "
                       "first calibration batch: its activations span too wide a range for per-tensor int8; "
                       "use bf16", error, INT8_MAX_ERROR)


def _prepare_openvino(model: nn.Module, precision: str, compile: bool | None, compile_options: Mapping[str, Any] | None,
                      calibration: Iterable[Tensor] | None, cache: str | Path | bool,
                      int8_max_error: float | None) -> OpenVinoModel:
    """``prepare(..., backend="openvino")``: the cached conversion of ``model`` when there is one, else
    ``model`` folded, converted (and stored in the cache)."""
    from .openvino_backend import ConversionCache, OpenVinoModel, default_cache_dir

    if _device_of(model).type != "cpu":
        raise ValueError(f"prepare: the OpenVINO backend runs on the CPU; the model is on {_device_of(model)}")
    if compile is False or compile_options:
        raise ValueError("prepare: compile=False and compile_options are for backend='torch' (OpenVINO always compiles)")
    batches = list(calibration) if calibration is not None else None
    root = default_cache_dir() if cache is True else (Path(cache) if cache else None)
    store = ConversionCache(root) if root is not None else None
    variant = f"max_error={int8_max_error}" if int8_max_error is not None else ""
    key = store.model_key(model, precision == "int8", batches or (), variant) if store is not None else ""
    result = store.load(key, precision) if store is not None else None
    if result is None:
        result = OpenVinoModel.convert(fold_batchnorm(model), precision, example=batches[0][:1] if batches else None,
                                       calibration=batches, max_error=int8_max_error)
        if store is not None:
            store.store(key, result)
    if result.int8_error is not None:
        _report_int8_error(result.int8_error, "OpenVINO, NNCF")
    logger.info("prepare: OpenVINO backend, %s, float32 outputs", result.precision)
    return result


def prepare(
    model: nn.Module,
    precision: str = "fp32",
    compile: bool | None = None,
    channels_last: bool = True,
    compile_options: Mapping[str, Any] | None = None,
    calibration: Iterable[Tensor] | None = None,
    backend: str = "torch",
    cache: str | Path | bool = True,
    int8_max_error: float | None = None,
) -> InferenceModel | OpenVinoModel:
    """A fast-inference version of ``model`` with the same outputs' meaning.

    ``backend="openvino"`` (CPU; ``pip install openvino``, plus ``nncf`` for int8) hands the folded
    model to OpenVINO instead (:class:`hrnet.openvino_backend.OpenVinoModel`: compiled per input
    shape, fastest on CPUs; ``compile``, ``compile_options`` and ``channels_last`` do not apply). Its
    conversions and compiled shapes are kept on disk (:class:`hrnet.openvino_backend.ConversionCache`):
    ``cache=True`` in :func:`hrnet.openvino_backend.default_cache_dir`, a path there, ``False`` nowhere.
    ``int8_max_error`` (OpenVINO int8 only): NNCF's accuracy-aware quantization, which keeps the layers that
    hurt most in float until int8 moves the outputs on the calibration batches by at most this relative
    RMS error (:func:`hrnet.openvino_backend.quantize_int8`).
    The steps below are the default ``backend="torch"``:

    1. :func:`fold_batchnorm` (a deep copy; ``model`` is left untouched);
    2. ``channels_last``: the copy's weights and every 4-D input in NHWC memory format;
    3. ``precision="bf16"``: run under ``torch.autocast(device, torch.bfloat16)`` when the device
       supports bf16 natively (:func:`bf16_supported`), otherwise fall back to fp32 with a
       warning on the ``hrnet.inference`` logger; outputs are float32 either way. The path taken
       is ``result.precision``;
    4. ``compile=True``: ``torch.compile`` (inductor, static shapes) with inductor *freezing*
       (weights become constants and are pre-packed for oneDNN, so convolutions run with their
       bias, ReLU, residual add and add + ReLU fused in; it only applies without grad, i.e. under
       ``torch.inference_mode()``) and, on CPU, the C++ wrapper (no Python between kernels). See
       :meth:`InferenceModel.compile_inductor`. ``compile_options`` are extra inductor options.
       The first call with each new input shape compiles (tens of seconds). ``None`` (the
       default) means on for int8 and off otherwise;
    5. ``precision="int8"`` (CPU only; needs ``pip install torchao``): post-training static int8
       quantization with torchao's x86 inductor recipe (:func:`hrnet.quantization.quantize_int8`),
       calibrated on the input batches that ``calibration`` yields (use a few hundred real images:
       the activation ranges come from them). Runs only compiled; oneDNN then executes each
       conv (+ add) (+ ReLU) as one int8 kernel (AMX or VNNI where the CPU has them). The result's
       ``int8_error`` says how far int8 moves the outputs on the first calibration batch (relative
       RMS error); above :data:`INT8_MAX_ERROR` a warning says the model does not suit int8.

    The result is in eval mode; call it under ``torch.inference_mode()``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"prepare: precision must be one of {PRECISIONS}, got {precision!r}")
    if backend not in BACKENDS:
        raise ValueError(f"prepare: backend must be one of {BACKENDS}, got {backend!r}")
    if int8_max_error is not None and (backend != "openvino" or precision != "int8"):
        raise ValueError("prepare: int8_max_error applies to precision='int8' with backend='openvino' (NNCF)")
    if backend == "openvino":
        return _prepare_openvino(model, precision, compile, compile_options, calibration, cache, int8_max_error)
    folded = fold_batchnorm(model)
    device = _device_of(folded)
    chosen = precision
    error: float | None = None
    if precision == "int8":
        if compile is False:
            raise ValueError("prepare: int8 runs only through inductor; leave compile at None or True")
        if device.type != "cpu":
            raise ValueError(f"prepare: int8 is a CPU path (oneDNN); the model is on {device}")
        if calibration is None:
            raise ValueError("prepare: int8 needs calibration=<iterable of NCHW input batches>")
        check_torch_int8_cpu()
        from .quantization import int8_error, quantize_int8

        batches = list(calibration)
        net: nn.Module = quantize_int8(folded, batches, channels_last)
        error = int8_error(folded, net, batches[0], channels_last)
        _report_int8_error(error, "PT2E, x86 inductor quantizer")
    else:
        if calibration is not None:
            raise ValueError(f"prepare: calibration is for precision='int8', not {precision!r}")
        if precision == "bf16":
            if bf16_supported(device):
                logger.info("prepare: bf16 autocast on %s (native bf16 support), float32 outputs", device.type)
            else:
                chosen = "fp32"
                logger.warning(
                    "prepare: bf16 requested but %s has no native bf16 support; falling back to fp32", device
                )
        net = folded.to(memory_format=torch.channels_last) if channels_last else folded
    wrapper = InferenceModel(net, chosen, channels_last, device.type).eval()
    wrapper.int8_error = error
    if hasattr(model, "preset"):
        wrapper.preset = model.preset  # the int8 graph does not carry it
    if compile or precision == "int8":
        wrapper.compile_inductor(compile_options)
    return wrapper


__all__ = [
    "ATTRIBUTE_PAIRS", "CalibrateThenInt8", "INT8_MAX_ERROR", "InferenceModel", "MALLOC_SETTINGS", "bf16_supported",
    "count_batchnorm", "fold_batchnorm", "prepare", "tune_malloc",
]
