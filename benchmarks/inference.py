"""Inference speed, side by side on the same weights and inputs: timm's HRNet (the peer a user would
pick, eager fp32, features only; for classification the whole classifier), the same timm model through OpenVINO
bf16 converted the obvious way (``openvino.convert_model``, the bf16 hint, no BN folding, one request: what a
careful user would build), against ours in every `hrnet.inference.prepare` mode, with the torch backend and
(when openvino is installed) the OpenVINO backend.

    python benchmarks/inference.py [--quick | --scaling] [--only pose|seg|cls] [--no-compile] [--modes M1,M2]
                                   [--tune-malloc]

All modes of a workload are built first, then timed in interleaved rounds (see :func:`measure`):
ms/image is the median over rounds, and "x timm" the median over rounds of timm's time divided by
the mode's time in the same round. For each workload it prints ms/image, images/s, the speed-up over
timm (and over timm through OpenVINO bf16), the ISA path each mode's kernels took (oneDNN's verbose log
for PyTorch, the compiled graph's kernels for OpenVINO; listed in full under the table) and the fraction of this
machine's GEMM peak (fp32 and bf16 peaks measured in the same run with large matmuls) that each mode
reaches, counting 2 x the model's multiply-adds as its FLOPs ("% of GEMM peak" for int8 is against
the bf16 peak: no int8 GEMM peak is measured). Needs ``pip install timm`` (and torchao for int8; the
int8 mode is calibrated on random inputs, which is fine for speed; see benchmarks/quality.py for its
accuracy). ``--tune-malloc`` runs the whole process, timm included, with
:func:`hrnet.inference.tune_malloc`; by default both run with glibc's defaults, as a user's process would.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable

import torch

from hrnet import create_model, openvino_backend, quantization
from hrnet.cpu import (
    cpu_flags,
    cpu_name,
    describe,
    isa_paths,
    onednn_kernels,
    openvino_kernels,
)
from hrnet.inference import bf16_supported, prepare, tune_malloc
from hrnet.models.complexity import count_macs


def gemm_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Achieved FLOP/s of an n x n x n GEMM in ``dtype`` (best of ``repeats``), the faster of ``torch.matmul``
    and the same GEMM as a 1x1 convolution (oneDNN's kernels, the ones the models run: on AMD CPUs torch's fp32
    matmul goes to a BLAS whose path is slower than oneDNN's AVX-512 one)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    image, weight = torch.randn(1, n, n // 32, 32, dtype=dtype), torch.randn(n, n, 1, 1, dtype=dtype)
    best = float("inf")
    with torch.inference_mode():
        for call in (lambda: a @ b, lambda: torch.nn.functional.conv2d(image, weight)):
            for _ in range(3):
                call()
            best = min(best, *(_timed(call) for _ in range(repeats)))
    return 2 * n**3 / best


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(fns: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor, seconds: float,
            rounds: int) -> dict[str, list[float]]:
    """Seconds per call of every function, one median per round. The functions take turns, round
    after round (each about ``seconds / rounds`` per round, at least 2 calls), so a slow drift of
    the machine's speed hits all of them alike instead of whichever happened to run then."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(2):
                fn(x)  # warm-up; compiles
        for _ in range(rounds):
            for name, fn in fns.items():
                times: list[float] = []
                while len(times) < 2 or sum(times) < seconds / rounds:
                    times.append(_timed(lambda: fn(x)))
                samples[name].append(statistics.median(times))
    return samples


def timm_peer(preset: str, ours: torch.nn.Module) -> torch.nn.Module:
    """timm's features-only HRNet of the same width carrying our backbone's weights (timm keeps every
    fusion of the last module, which the pose backbone drops: those stay at timm's init)."""
    import timm

    from hrnet.models.convert import to_official

    if preset in CLASSIFIERS:  # the whole classifier, the same architecture as ours
        peer = timm.create_model(preset, pretrained=False)
        peer.load_state_dict(to_official(ours.state_dict(), "cls"))
        return peer.eval()
    width = {"pose_hrnet_w32": "hrnet_w32", "seg_hrnet_w48": "hrnet_w48"}[preset]
    peer = timm.create_model(width, pretrained=False, features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
    _, unexpected = peer.load_state_dict(to_official(ours.backbone.state_dict(), "cls"), strict=False)
    assert not unexpected, unexpected[:5]
    return peer.eval()


def timm_openvino(peer: torch.nn.Module, x: torch.Tensor) -> Callable[[torch.Tensor], object]:
    """timm's model through OpenVINO the obvious way: ``convert_model`` on the eval model as it is (BN not
    folded), compiled with the bf16 precision hint and OpenVINO's default (latency) settings, one request."""
    import openvino as ov

    with torch.no_grad():
        compiled = ov.Core().compile_model(ov.convert_model(peer, example_input=x), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "bf16"})
    request = compiled.create_infer_request()

    def call(images: torch.Tensor) -> object:
        return request.infer({0: images.numpy()})

    call.compiled_models = lambda: [compiled]  # type: ignore[attr-defined]
    return call


def kernels(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> Counter[str]:
    """The compute kernels one call of ``fn`` ran (see :mod:`hrnet.cpu`)."""
    compiled = getattr(fn, "compiled_models", None)
    if compiled is not None:
        fn(x)
        return openvino_kernels(compiled())
    with torch.inference_mode():
        return onednn_kernels(lambda: fn(x))


TIMM = "timm eager fp32 (features)"
TIMM_CLASSIFIER = "timm eager fp32"
TIMM_OPENVINO = "timm openvino bf16 (convert_model)"
CLASSIFIERS = ("hrnet_w18", "hrnet_w48")


def modes(ours: torch.nn.Module, x: torch.Tensor, compile_: bool) -> dict[str, Callable[[], torch.nn.Module]]:
    """Every mode this machine can run, by name, each built only when measured."""
    cpu = torch.device("cpu")
    calibration = [torch.randn_like(x) for _ in range(2)]
    table: dict[str, Callable[[], torch.nn.Module]] = {
        "ours eager fp32": lambda: ours,
        "ours prepare fp32": lambda: prepare(ours, "fp32"),
    }
    if bf16_supported(cpu):
        table["ours prepare bf16"] = lambda: prepare(ours, "bf16")
    if compile_:
        table["ours prepare fp32 + compile"] = lambda: prepare(ours, "fp32", compile=True)
        if bf16_supported(cpu):
            table["ours prepare bf16 + compile"] = lambda: prepare(ours, "bf16", compile=True)
        if quantization.available():
            table["ours prepare int8 (compiled)"] = lambda: prepare(ours, "int8", calibration=calibration)
    if openvino_backend.available():
        table["ours openvino fp32"] = lambda: prepare(ours, "fp32", backend="openvino")
        if openvino_backend.bf16_native():
            table["ours openvino bf16"] = lambda: prepare(ours, "bf16", backend="openvino")
        if openvino_backend.available(int8=True):
            table["ours openvino int8"] = lambda: prepare(ours, "int8", calibration=calibration, backend="openvino")
    return table


def run(preset: str, size: tuple[int, int], batch: int, compile_: bool, seconds: float, rounds: int,
        scaling: bool = False, only_modes: list[str] | None = None
        ) -> tuple[dict[str, list[float]], dict[str, Counter[str]]]:
    """Per-round seconds per batch of timm (first) and of each selected mode of ours, and the kernels each ran."""
    torch.manual_seed(0)
    ours = create_model(preset).eval()
    x = torch.randn(batch, 3, *size)
    table = modes(ours, x, compile_)
    if scaling:
        fastest = next(n for n in ("ours openvino bf16", "ours prepare bf16 + compile", "ours prepare fp32 + compile")
                       if n in table)
        table = {fastest: table[fastest]}
    peer = timm_peer(preset, ours)
    fns = {TIMM_CLASSIFIER if preset in CLASSIFIERS else TIMM: peer}
    if openvino_backend.available():  # with the bf16 hint, which OpenVINO runs as f32 where bf16 is not native
        fns[TIMM_OPENVINO] = timm_openvino(peer, x)
    fns.update((name, build()) for name, build in table.items()
               if not only_modes or any(m in name for m in only_modes))
    samples = measure(fns, x, seconds, rounds)
    return samples, {name: kernels(fn, x) for name, fn in fns.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pose only")
    parser.add_argument("--only", choices=["pose", "seg", "cls"],
                        help="run only the pose, segmentation or classification (hrnet_w18 / w48 at 224) workloads")
    parser.add_argument("--scaling", action="store_true",
                        help="timm and our fastest mode only, pose_hrnet_w32 over batch 1-8 and input sizes "
                        "up to 512x1024")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile modes")
    parser.add_argument("--modes", help="comma-separated parts of mode names to run (timm always runs), "
                        "e.g. 'bf16 + compile,int8'")
    parser.add_argument("--seconds", type=float, default=4.0, help="minimum timed seconds per mode")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (see measure)")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="run the whole process (timm too) with hrnet.inference.tune_malloc")
    args = parser.parse_args()
    malloc = "tuned malloc" if args.tune_malloc and tune_malloc() else "default malloc"
    torch.set_num_threads(torch.get_num_threads())
    peak32 = gemm_peak(torch.float32)
    peak16 = gemm_peak(torch.bfloat16) if bf16_supported(torch.device("cpu")) else peak32  # bf16 runs as fp32
    print(f"CPU: {cpu_name()} ({platform.machine()}; flags: {' '.join(cpu_flags()) or 'unknown'}), "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {malloc}; GEMM peak fp32 "
          f"{peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.0f} GFLOP/s"
          f"{'' if bf16_supported(torch.device('cpu')) else ' (no native bf16: the bf16 modes run fp32)'}")
    workloads = [("pose_hrnet_w32", (256, 192), 1), ("pose_hrnet_w32", (256, 192), 8)]
    if not args.quick:
        workloads.append(("seg_hrnet_w48", (512, 1024), 1))
        workloads += [(name, (224, 224), batch) for name in CLASSIFIERS for batch in (1, 8)]
    if args.scaling:
        workloads = [("pose_hrnet_w32", (256, 192), b) for b in (1, 2, 4, 8)]
        workloads += [("pose_hrnet_w32", (384, 288), b) for b in (1, 8)] + [("pose_hrnet_w32", (512, 1024), 1)]
    if args.only:
        workloads = [w for w in workloads if (w[0] in CLASSIFIERS) == (args.only == "cls")
                     and (args.only == "cls" or w[0].startswith(args.only))]
    print("| model | input | batch | mode | ms/image | images/s | x timm | x timm OV bf16 | % of GEMM peak | ISA path |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    paths: dict[str, str] = {}
    for preset, size, batch in workloads:
        with torch.device("meta"):
            flops = 2 * count_macs(create_model(preset), size)
        samples, used = run(preset, size, batch, not args.no_compile, args.seconds, args.rounds, args.scaling,
                            args.modes.split(",") if args.modes else None)
        peer = samples[TIMM_CLASSIFIER if preset in CLASSIFIERS else TIMM]
        peer_ov = samples.get(TIMM_OPENVINO)
        for mode, times in samples.items():
            sec = statistics.median(times)
            speedup = statistics.median(t / s for t, s in zip(peer, times))
            over_ov = f"{statistics.median(t / s for t, s in zip(peer_ov, times)):.2f}" if peer_ov else "-"
            peak = peak16 if "bf16" in mode or "int8" in mode else peak32
            paths.setdefault(mode, describe(used[mode]))
            print(f"| {preset} | {size[0]}x{size[1]} | {batch} | {mode} | {sec / batch * 1000:.1f} | "
                  f"{batch / sec:.2f} | {speedup:.2f} | {over_ov} | {100 * flops * batch / sec / peak:.0f}% | "
                  f"{' + '.join(isa_paths(used[mode])) or 'PyTorch kernels'} |", flush=True)
    print("\nKernels each mode ran (first workload it ran in):")
    for mode, line in paths.items():
        print(f"- {mode}: {line}")


if __name__ == "__main__":
    main()
