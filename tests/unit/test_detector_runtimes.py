"""Runtimes agree and `auto` picks by measurement: real models on real PETS09 crops.

Every runtime candidate on this machine (ONNX Runtime at each graph
optimisation level, OpenVINO CPU) runs the same model files on the same
inputs; their appearance vectors must agree (cosine >= 0.999) and their boxes
too, since pre- and post-processing are shared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.boxes import box_iou
from detector.analyzer import Analyzer
from detector.backends import OnnxDetector
from detector.checksum import resolve_model_path
from detector.config import AnalyzerConfig, OnnxDetectorConfig, OnnxEmbedderConfig, RuntimeConfig
from detector.embedder import OnnxEmbedder
from detector.preprocess import crop_views
from detector.runtime import Candidate, _disagreeing, agreement, candidates, native_bf16
from evaluation.video import video_frames
from service.assets import models_dir, pets_dir

FRAMES = (60, 100, 160)
MIN_COSINE = 0.999


def _pinned(engine: str, level: str = "auto") -> RuntimeConfig:
    return RuntimeConfig(
        engine=engine,  # type: ignore[arg-type]
        graph_optimization=level,  # type: ignore[arg-type]
        openvino_devices=["CPU"],
        intra_op_threads=2,
        embedder_precision="f32",
    )


def _all_pinned() -> list[RuntimeConfig]:
    runtimes = [_pinned("onnxruntime", lv) for lv in ("basic", "extended", "all")]
    if candidates(_pinned("openvino")):
        runtimes.append(_pinned("openvino"))
    return runtimes


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    last = max(FRAMES) + 1
    return [f for i, f in video_frames(pets_dir() / "vtest.avi", last) if i in FRAMES]


@pytest.fixture(scope="module")
def crops(frames: list[np.ndarray]) -> list[np.ndarray]:
    an = Analyzer.from_config(AnalyzerConfig(embedder={"type": "none"}, models_dir=models_dir()))
    out = [c for f in frames for c in crop_views(f, an.detector.detect_batch([f])[0].boxes_xyxy)]
    assert len(out) >= 12, "PETS09 frames 60/100/160 hold several people"
    return out


def _embedder(runtime: RuntimeConfig) -> OnnxEmbedder:
    cfg = OnnxEmbedderConfig()
    spec = cfg.spec()
    return OnnxEmbedder(resolve_model_path(None, spec.filename, models_dir()), spec, runtime, 32)


def _detector(runtime: RuntimeConfig) -> OnnxDetector:
    spec = OnnxDetectorConfig().spec()
    return OnnxDetector(resolve_model_path(None, spec.filename, models_dir()), spec, runtime)


def test_openvino_is_a_candidate_here() -> None:
    labels = [c.label for c in candidates(RuntimeConfig(openvino_devices=["CPU"]))]
    assert "openvino:CPU:latency" in labels, labels
    assert {"onnxruntime:cpu:extended", "onnxruntime:cpu:all"} <= set(labels)


def test_vectors_agree_across_runtimes(crops: list[np.ndarray]) -> None:
    ref = _embedder(_pinned("onnxruntime", "basic")).embed(crops)
    for runtime in _all_pinned()[1:]:
        emb = _embedder(runtime)
        vecs = emb.embed(crops)
        cos = np.sum(ref * vecs, axis=1)
        assert cos.min() >= MIN_COSINE, (emb.choice.chosen, float(cos.min()))


def test_boxes_agree_across_runtimes(frames: list[np.ndarray]) -> None:
    ref = _detector(_pinned("onnxruntime", "basic")).detect_batch(frames)
    for runtime in _all_pinned()[1:]:
        det = _detector(runtime)
        for a, b in zip(ref, det.detect_batch(frames), strict=True):
            assert len(a.scores) == len(b.scores), det.choice.chosen
            assert box_iou(a.boxes_xyxy, b.boxes_xyxy).max(axis=1).min() >= 0.99
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)


def test_auto_keeps_the_fastest_it_timed() -> None:
    """The fastest candidate timed, unless it is bfloat16 and not faster than the fastest
    float32 one by ``reduced_precision_min_speedup``: then that float32 one."""
    from detector.runtime import reduced_precision

    runtime = RuntimeConfig(openvino_devices=["CPU"], auto_timing_s=0.2)
    emb = _embedder(runtime)
    ms = emb.choice.ms_per_item
    assert len(ms) >= 3, ms
    fastest = min(ms, key=ms.__getitem__)
    by_label = {c.label: c for c in candidates(runtime, runtime.embedder_precision)}
    full = {k: v for k, v in ms.items() if not reduced_precision(by_label[k])}
    if reduced_precision(by_label[fastest]) and (
        ms[fastest] * runtime.reduced_precision_min_speedup > min(full.values())
    ):
        fastest = min(full, key=full.__getitem__)
    assert emb.choice.chosen == fastest
    assert emb.provider == emb.runner.info.provider


def test_a_pinned_runtime_is_not_timed() -> None:
    emb = _embedder(_pinned("onnxruntime", "extended"))
    assert emb.choice.chosen == "onnxruntime:cpu:extended"
    assert emb.choice.reason == "only candidate" and not emb.choice.ms_per_item


def test_openvino_without_a_device_is_a_clear_error() -> None:
    runtime = RuntimeConfig(engine="openvino", openvino_devices=["NPU_THAT_IS_NOT_HERE"])
    with pytest.raises(RuntimeError, match="OpenVINO devices"):
        _embedder(runtime)


def test_the_choice_is_exported_as_metrics() -> None:
    from prometheus_client import REGISTRY

    from detector import metrics
    from detector.runtime import RuntimeChoice

    choice = RuntimeChoice(
        "m.onnx", "openvino:CPU:latency", "fastest", {"openvino:CPU:latency": 2.5}
    )
    metrics.export_runtime_choice("embedder", choice)
    labels = {"model": "embedder", "candidate": "openvino:CPU:latency"}
    assert REGISTRY.get_sample_value("crosscam_detector_runtime_chosen", labels) == 1
    assert REGISTRY.get_sample_value("crosscam_detector_runtime_ms_per_item", labels) == 2.5


# --- reduced precision (bfloat16 where the CPU computes it natively) ---------------------

BF16_MIN_COSINE = 0.995
bf16_here = pytest.mark.skipif(
    not native_bf16("CPU"), reason="this CPU has no native bfloat16 (AMX / AVX512-BF16)"
)


def _bf16() -> RuntimeConfig:
    return RuntimeConfig(
        engine="openvino",
        openvino_devices=["CPU"],
        detector_precision="bf16",
        embedder_precision="bf16",
        intra_op_threads=2,
    )


def test_precision_decides_which_openvino_candidates_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from detector import runtime as rt

    def labels(precision: str) -> set[str]:
        runtime = RuntimeConfig(openvino_devices=["CPU"])
        return {c.label for c in candidates(runtime, precision) if c.engine == "openvino"}

    both = {"openvino:CPU:latency", "openvino:CPU:latency-bf16"}
    assert labels("f32") == {"openvino:CPU:latency"}
    if native_bf16("CPU"):
        assert labels("bf16") == {"openvino:CPU:latency-bf16"}
        assert labels("both") == both  # what `bench models` times
        # 'auto' times bfloat16 only where the hardware makes it clearly faster (AMX): an
        # AVX512-BF16 CPU's 1.08x was a tie that load flipped between runs
        monkeypatch.setattr(rt, "cpu_has_amx", lambda: False)
        assert labels("auto") == {"openvino:CPU:latency"}
        monkeypatch.setattr(rt, "cpu_has_amx", lambda: True)
        assert labels("auto") == both
    else:  # nothing to reduce: float32 stays
        assert labels("auto") == labels("bf16") == labels("both") == {"openvino:CPU:latency"}


def test_amx_is_read_from_the_cpu_flags() -> None:
    from detector import runtime as rt

    amx = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n"
    no_amx = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n"
    assert rt.amx_in_cpuinfo(amx) and not rt.amx_in_cpuinfo(no_amx)
    assert not rt.amx_in_cpuinfo("model name\t: amx_bf16 in a name, not a flag\n")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert rt.cpu_has_amx() == rt.amx_in_cpuinfo(flags)


@bf16_here
def test_bfloat16_vectors_and_boxes_stay_close_to_float32(
    crops: list[np.ndarray], frames: list[np.ndarray]
) -> None:
    emb = _embedder(_bf16())
    assert emb.choice.chosen == "openvino:CPU:latency-bf16"
    ref = _embedder(_pinned("onnxruntime", "basic")).embed(crops)
    cos = np.sum(ref * emb.embed(crops), axis=1)
    assert cos.min() >= BF16_MIN_COSINE, float(cos.min())
    assert cos.min() < 0.99999, "bfloat16 should differ from float32 a little: is it running?"
    det = _detector(_bf16())
    ref_boxes = _detector(_pinned("onnxruntime", "basic")).detect_batch(frames)
    for a, b in zip(ref_boxes, det.detect_batch(frames), strict=True):
        # a box near the score threshold may come or go; the people found stay the same
        assert abs(len(a.scores) - len(b.scores)) <= 1
        strong = a.scores >= 0.5
        iou = box_iou(a.boxes_xyxy[strong], b.boxes_xyxy)
        assert iou.max(axis=1).min() >= 0.9


class _Fake:
    """A runner whose output is the input scaled, plus optional noise: agreement is known."""

    engine = "fake"
    settings = ""

    def __init__(self, noise: float) -> None:
        self.noise = noise
        self.info = None

    def run(self, tensor: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(len(tensor))
        return 2.0 * tensor + self.noise * rng.standard_normal(tensor.shape)


def test_auto_precision_drops_a_reduced_candidate_that_disagrees() -> None:
    cands = {
        "ref": Candidate("openvino", "CPU", "latency"),
        "close": Candidate("openvino", "CPU", "latency-bf16"),
        "far": Candidate("openvino", "GPU", "latency-bf16"),
    }
    runners = {"ref": _Fake(0.0), "close": _Fake(0.01), "far": _Fake(3.0)}
    x = np.random.default_rng(1).standard_normal((4, 64))
    out = _disagreeing(runners, cands, lambda r: x, 0.995)  # type: ignore[arg-type]
    assert set(out) == {"far"} and "agrees with float32 at cosine" in out["far"]
    assert agreement(x, x) == pytest.approx(1.0) and agreement(x, -x) == pytest.approx(-1.0)


@bf16_here
def test_auto_precision_times_bfloat16_and_keeps_it_only_when_it_agrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from detector import runtime as rt

    monkeypatch.setattr(rt, "cpu_has_amx", lambda: True)  # as on an AMX CPU
    auto = RuntimeConfig(openvino_devices=["CPU"], embedder_precision="auto", auto_timing_s=0.2)
    emb = _embedder(auto)
    assert "openvino:CPU:latency-bf16" in emb.choice.ms_per_item
    strict = auto.model_copy(update={"reduced_precision_min_cosine": 1.0})
    emb = _embedder(strict)
    assert "openvino:CPU:latency-bf16" not in emb.choice.ms_per_item
    assert "agrees with float32" in emb.choice.failed["openvino:CPU:latency-bf16"]


def test_auto_precision_takes_bfloat16_only_when_clearly_faster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A near tie (8 % faster, as AVX512-BF16 without AMX measured here) keeps float32, so
    timing noise cannot flip the choice between runs; a clear win (AMX) takes bfloat16."""
    from pathlib import Path

    from detector import runtime as rt

    cands = [
        Candidate("onnxruntime", "cpu", "all"),
        Candidate("openvino", "CPU", "latency"),
        Candidate("openvino", "CPU", "latency-bf16"),
    ]
    monkeypatch.setattr(rt, "candidates", lambda runtime, precision: cands)
    monkeypatch.setattr(rt, "open_runner", lambda path, runtime, c, what: _Fake(0.0))
    x = np.random.default_rng(1).standard_normal((4, 64))

    def choose(bf16_ms: float) -> rt.RuntimeChoice:
        ms = {"onnxruntime:cpu:all": 10.0, "openvino:CPU:latency": 4.5}
        ms["openvino:CPU:latency-bf16"] = bf16_ms
        monkeypatch.setattr(
            rt,
            "_time_candidates",
            lambda runners, make_input, s: {k: v * 4e-3 for k, v in ms.items()},
        )
        return rt.open_fastest(
            Path("m.onnx"), RuntimeConfig(), what="m", make_input=lambda r: x, precision="auto"
        )[1]

    near = choose(4.16)
    assert near.chosen == "openvino:CPU:latency" and "bfloat16 not faster" in near.reason
    assert near.ms_per_item["openvino:CPU:latency-bf16"] == pytest.approx(4.16)
    clear = choose(3.0)
    assert (
        clear.chosen == "openvino:CPU:latency-bf16" and clear.reason == "fastest by timing at start"
    )
