"""Model runtimes behind one small interface, and ``auto``: the fastest one, measured at start.

A :class:`Runner` runs one ONNX file and returns its first output. Two engines:

* ONNX Runtime (:class:`OrtRunner`): CPU, CUDA or TensorRT provider, with a
  graph optimisation level ("basic", "extended" or "all" — "all" adds layout
  transformations that speed some models and slow others);
* OpenVINO (:class:`OpenVinoRunner`): CPU, or an
  Intel GPU where present.

``engine = "auto"`` (the default) opens every candidate the machine offers,
times each on the model's own input shape for a short budget (candidates
interleaved, so a burst of load on the machine hits them alike) and keeps the
fastest; the timings come back in a :class:`RuntimeChoice`, logged and exported
as metrics by the service. Pre- and post-processing are the callers' and the
same whatever runs the graph, so vectors and boxes agree across runtimes.

Threads: every session gets ``intra_op_threads`` (default: the cores this
process may use, at most 4) and does not spin-wait between inferences, so the
detector and embedder in one process, and other stages on the same cores, do
not burn each other's CPU while idle.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from detector.config import PROVIDER_NAMES, RuntimeConfig

log = logging.getLogger(__name__)

_ORT_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class SessionInfo:
    """What a runner runs on: the provider that took the graph and its inputs."""

    provider: str
    requested: tuple[str, ...]
    available: tuple[str, ...]
    input_name: str
    input_shape: tuple[int | str | None, ...]
    output_names: tuple[str, ...]


class Runner(Protocol):
    """One ONNX model, opened by some engine; ``run`` returns the first output."""

    engine: str
    settings: str
    info: SessionInfo

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """First output for a prepared float32 input tensor."""
        ...


@dataclass(frozen=True)
class Candidate:
    """One way to run a model: engine, device/provider and settings, e.g. ort/cpu/extended."""

    engine: str
    device: str
    settings: str

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.device}:{self.settings}"


@dataclass
class RuntimeChoice:
    """Which candidate runs a model, and why (ms per input item of each timed candidate)."""

    model: str
    chosen: str
    reason: str
    ms_per_item: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def choose_providers(runtime: RuntimeConfig) -> list[str]:
    """ONNX Runtime provider names to request: the preferred ones that are installed."""
    available = set(ort.get_available_providers())
    chosen = [PROVIDER_NAMES[p] for p in runtime.providers if PROVIDER_NAMES[p] in available]
    if not chosen:
        # CPU is always present in onnxruntime builds; reaching here means the
        # config excluded it and no accelerator is installed.
        raise RuntimeError(
            f"none of the configured providers {runtime.providers} is available "
            f"(onnxruntime has {sorted(available)})"
        )
    return chosen


class OrtRunner:
    """An ONNX Runtime session with deliberate threads and graph optimisation level."""

    engine = "onnxruntime"

    def __init__(
        self, path: Path, runtime: RuntimeConfig, *, what: str, level: str = "extended"
    ) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = runtime.intra_op_threads
        opts.inter_op_num_threads = runtime.inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = _ORT_LEVELS[level]
        # Idle threads sleep instead of spinning: the cores are shared with the
        # other session in this process and with the other stages.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.log_severity_level = (
            3  # errors only: ORT's warnings about unused initialisers are noise
        )
        requested = choose_providers(runtime)
        if "CUDAExecutionProvider" in requested and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu >= 1.21 finds the CUDA/cuDNN libraries of pip's nvidia-* wheels
            ort.preload_dlls()
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=requested)
        inp = self.session.get_inputs()[0]
        self.info = SessionInfo(
            provider=self.session.get_providers()[0],
            requested=tuple(requested),
            available=tuple(ort.get_available_providers()),
            input_name=inp.name,
            input_shape=tuple(inp.shape),
            output_names=tuple(o.name for o in self.session.get_outputs()),
        )
        self.settings = level
        self._out = [self.info.output_names[0]]
        log.info(
            "onnx_session_opened",
            extra={
                "model": what,
                "path": str(path),
                "provider": self.info.provider,
                "requested_providers": list(self.info.requested),
                "intra_op_threads": runtime.intra_op_threads,
                "graph_optimization": level,
                "input_shape": [str(d) for d in self.info.input_shape],
            },
        )

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(self._out, {self.info.input_name: tensor})[0]


def static_batch_size(info: SessionInfo) -> int | None:
    """The model's fixed batch dimension, or None when it is dynamic."""
    first = info.input_shape[0] if info.input_shape else None
    return first if isinstance(first, int) and first > 0 else None


# OpenVINO is optional at import time: without it ``auto`` times ONNX Runtime alone.
# Inference runs in float32 (INFERENCE_PRECISION_HINT; the CPU plugin would
# otherwise use bf16 on CPUs that have it), so vectors agree with ONNX Runtime's,
# unless a model's precision allows bfloat16 on a CPU that computes it natively.
BF16 = "bf16"


@cache
def _core() -> Any:
    import openvino as ov

    return ov.Core()


def _installed() -> bool:
    try:
        _core()
    except ImportError:
        return False
    return True


def openvino_devices(wanted: list[str]) -> list[str]:
    """The configured OpenVINO devices present here (e.g. ["CPU"]); [] without OpenVINO."""
    if not wanted or not _installed():
        return []
    have = _core().available_devices
    return [d for d in wanted if any(h == d or h.startswith(d + ".") for h in have)]


def openvino_unavailable_reason(wanted: list[str]) -> str:
    """Why :func:`openvino_devices` came back empty, for an error message."""
    if not _installed():
        return "OpenVINO is not installed (pip install openvino)"
    return f"none of the OpenVINO devices {wanted} is present ({_core().available_devices})"


def native_bf16(device: str) -> bool:
    """Whether OpenVINO's ``device`` computes bfloat16 natively (AMX or AVX512-BF16 on a CPU)."""
    if not _installed():
        return False
    try:
        caps = _core().get_property(device, "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - a device that does not report capabilities
        return False
    return "BF16" in [str(c).upper() for c in caps]


def amx_in_cpuinfo(text: str) -> bool:
    """Whether ``/proc/cpuinfo`` text lists the ``amx_bf16`` flag."""
    return any(
        line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines()
    )


@cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles for bfloat16 (Linux: the ``amx_bf16`` flag)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return amx_in_cpuinfo(f.read())
    except OSError:
        return False


def auto_bf16(device: str) -> bool:
    """Whether precision 'auto' times a bfloat16 candidate on ``device``.

    Only where bfloat16 is clearly faster by the hardware, not by a timing: a CPU with AMX
    (OSNet batch 8 1.5x float32's speed). An AVX512-BF16 CPU without AMX computes it
    natively but gains 1.08x, within the noise of a start-up timing on a loaded machine:
    there `auto` chose bfloat16 under load (load average 3.5-6.3) and float32 when quiet,
    and linking on an evaluation cut moved by 0.045 F1 between the two.
    """
    return native_bf16(device) and (not device.startswith("CPU") or cpu_has_amx())


def _dims(partial_shape: Any) -> tuple[int | str | None, ...]:
    return tuple(d.get_length() if d.is_static else "dynamic" for d in partial_shape)


class OpenVinoRunner:
    """One ONNX file compiled by OpenVINO for ``device``, with one infer request."""

    engine = "openvino"

    def __init__(
        self, path: Path, runtime: RuntimeConfig, *, device: str, what: str, precision: str = "f32"
    ) -> None:
        core = _core()
        model = core.read_model(str(path))
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
        }
        if device == "CPU":
            config["INFERENCE_NUM_THREADS"] = runtime.intra_op_threads
            config["NUM_STREAMS"] = 1
            # Pinned threads would fight the other stages for the same cores.
            config["ENABLE_CPU_PINNING"] = False
        self.compiled = core.compile_model(model, device, config)
        self.request = self.compiled.create_infer_request()
        inp = self.compiled.input(0)
        self.info = SessionInfo(
            provider=f"OpenVINO:{device}",
            requested=(device,),
            available=tuple(core.available_devices),
            input_name=inp.get_any_name(),
            input_shape=_dims(model.input(0).get_partial_shape()),
            output_names=tuple(o.get_any_name() for o in self.compiled.outputs),
        )
        self.settings = "latency" if precision == "f32" else f"latency-{precision}"
        self._output = self.compiled.output(0)
        log.info(
            "openvino_model_compiled",
            extra={
                "model": what,
                "path": str(path),
                "device": device,
                "threads": runtime.intra_op_threads,
                "precision": precision,
                "input_shape": [str(d) for d in self.info.input_shape],
            },
        )

    def run(self, tensor: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(tensor)})
        # The request reuses its output buffer on the next call: copy.
        return np.array(result[self._output], copy=True)


def _ort_device(provider: str) -> str:
    return {v: k for k, v in PROVIDER_NAMES.items()}.get(provider, provider)


def candidates(runtime: RuntimeConfig, precision: str = "f32") -> list[Candidate]:
    """Every (engine, device, settings) the config allows on this machine, preferred first.

    ``precision`` (a model's, :data:`detector.config.Precision`): 'f32' opens OpenVINO in
    float32 only; 'auto' adds a bfloat16 candidate where the device computes it natively
    and fast (:func:`auto_bf16`: a CPU with AMX); 'bf16' replaces float32 by it wherever
    native; 'both' (benchmarks) adds it wherever native.
    """
    out: list[Candidate] = []
    if runtime.engine in ("auto", "onnxruntime"):
        device = _ort_device(choose_providers(runtime)[0])
        levels = (
            [runtime.graph_optimization]
            if runtime.graph_optimization != "auto"
            else ["extended", "all"]
        )
        out += [Candidate("onnxruntime", device, lv) for lv in levels]
    if runtime.engine in ("auto", "openvino"):
        devices = openvino_devices(runtime.openvino_devices)
        if runtime.engine == "openvino" and not devices:
            raise RuntimeError(openvino_unavailable_reason(runtime.openvino_devices))
        for d in devices:
            bf16 = auto_bf16(d) if precision == "auto" else precision != "f32" and native_bf16(d)
            if precision != "bf16" or not bf16:
                out.append(Candidate("openvino", d, "latency"))
            if bf16:
                out.append(Candidate("openvino", d, f"latency-{BF16}"))
    return out


def reduced_precision(cand: Candidate) -> bool:
    """Whether ``cand`` computes in less than float32."""
    return cand.settings.endswith(f"-{BF16}")


def open_runner(path: Path, runtime: RuntimeConfig, cand: Candidate, *, what: str) -> Runner:
    """Open ``path`` as candidate ``cand``."""
    if cand.engine == "onnxruntime":
        return OrtRunner(path, runtime, what=what, level=cand.settings)
    precision = BF16 if reduced_precision(cand) else "f32"
    return OpenVinoRunner(path, runtime, device=cand.device, what=what, precision=precision)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine, item by item (first axis), between two outputs of the same input."""
    x = np.asarray(a, np.float64).reshape(len(a), -1)
    y = np.asarray(b, np.float64).reshape(len(b), -1)
    num = (x * y).sum(axis=1)
    den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Least cosine, item by item (first axis), between two outputs of the same input."""
    cos = cosines(a, b)
    return float(cos.min()) if len(cos) else 1.0


def _disagreeing(
    runners: dict[str, Runner],
    cands: dict[str, Candidate],
    make_input: Callable[[Runner], np.ndarray],
    min_cosine: float,
) -> dict[str, str]:
    """Reduced-precision runners whose output strays from a float32 runner's on the same input."""
    full = [k for k in runners if not reduced_precision(cands[k])]
    if not full:
        return {}
    ref_runner = runners[full[0]]
    out: dict[str, str] = {}
    for k, r in runners.items():
        if not reduced_precision(cands[k]):
            continue
        x = make_input(r)
        ref = np.concatenate([ref_runner.run(x[i : i + 1]) for i in range(len(x))])
        cos = agreement(r.run(x), ref)
        if cos < min_cosine:
            out[k] = f"output agrees with float32 at cosine {cos:.4f} < {min_cosine}"
    return out


def _time_candidates(
    runners: dict[str, Runner], make_input: Callable[[Runner], np.ndarray], budget_s: float
) -> dict[str, float]:
    """Median seconds per call of each runner, calls interleaved round-robin within the budget."""
    inputs = {k: make_input(r) for k, r in runners.items()}
    for k, r in runners.items():  # first calls allocate and compile kernels: not timed
        r.run(inputs[k])
    times: dict[str, list[float]] = {k: [] for k in runners}
    deadline = time.perf_counter() + budget_s
    rounds = 0
    while rounds < 3 or (time.perf_counter() < deadline and rounds < 50):
        for k, r in runners.items():
            t0 = time.perf_counter()
            r.run(inputs[k])
            times[k].append(time.perf_counter() - t0)
        rounds += 1
    return {k: statistics.median(v) for k, v in times.items()}


def open_fastest(
    path: Path,
    runtime: RuntimeConfig,
    *,
    what: str,
    make_input: Callable[[Runner], np.ndarray],
    precision: str = "f32",
) -> tuple[Runner, RuntimeChoice]:
    """The fastest runner for ``path`` among :func:`candidates`, by a short timing.

    ``make_input`` builds a representative input for a runner (its shape may
    depend on the runner's fixed batch); with ``precision`` 'auto' it is also the input a
    bfloat16 candidate must agree on with float32, so it should look like real input
    (white noise is far harsher on bfloat16 than images are). A single candidate is
    opened untimed. A candidate that fails to open, or disagrees, is skipped and
    reported in the choice.
    """
    cands = candidates(runtime, precision)
    by_label = {c.label: c for c in cands}
    runners: dict[str, Runner] = {}
    failed: dict[str, str] = {}
    for c in cands:
        try:
            runners[c.label] = open_runner(path, runtime, c, what=what)
        except Exception as exc:  # noqa: BLE001 - an engine that cannot take this model
            failed[c.label] = f"{type(exc).__name__}: {exc}"
            log.warning("runtime_candidate_failed", extra={"model": what, "candidate": c.label})
    if precision == "auto":
        for k, why in _disagreeing(
            runners, by_label, make_input, runtime.reduced_precision_min_cosine
        ).items():
            failed[k] = why
            del runners[k]
            log.warning("runtime_candidate_disagrees", extra={"model": what, "candidate": k})
    if not runners:
        raise RuntimeError(f"{what}: no runtime could open the model: {failed}")
    if len(runners) == 1:
        label = next(iter(runners))
        return runners[label], RuntimeChoice(what, label, "only candidate", failed=failed)
    batch_of = {k: len(make_input(r)) for k, r in runners.items()}
    seconds = _time_candidates(runners, make_input, runtime.auto_timing_s)
    ms = {k: round(1000 * s / batch_of[k], 3) for k, s in seconds.items()}
    label = min(ms, key=ms.__getitem__)
    reason = "fastest by timing at start"
    if reduced_precision(by_label[label]):
        full = {k: v for k, v in ms.items() if not reduced_precision(by_label[k])}
        if full and ms[label] * runtime.reduced_precision_min_speedup > min(full.values()):
            label = min(full, key=full.__getitem__)
            reason = "fastest float32: bfloat16 not faster by reduced_precision_min_speedup"
    choice = RuntimeChoice(what, label, reason, ms, failed)
    log.info(
        "runtime_chosen",
        extra={
            "model": what,
            "chosen": label,
            "reason": reason,
            "ms_per_item": ms,
            "failed": failed,
        },
    )
    return runners[label], choice


# Where graphs edited at load (dynamic batch) are written; never committed, rebuilt when missing.
EDITED_MODELS_DIR = Path(tempfile.gettempdir()) / "crosscam-models"


def with_dynamic_batch(path: Path) -> Path:
    """A copy of ``path`` whose first input and outputs have a symbolic batch dimension.

    For exports fixed at batch 1 whose reshapes take the batch from ``Shape``
    (the YOLOX-nano export): the graph then runs a whole batch in one call.
    Written once per source file (keyed by size and mtime) under the temp folder.
    """
    import onnx

    st = path.stat()
    out = EDITED_MODELS_DIR / f"{path.stem}-{st.st_size}-{st.st_mtime_ns}-dynbatch.onnx"
    if out.exists():
        return out
    model = onnx.load(str(path))
    for value in [model.graph.input[0], *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, out)
    log.info("model_batch_made_dynamic", extra={"source": str(path), "edited": str(out)})
    return out
