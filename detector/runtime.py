"""ONNX Runtime sessions: provider choice, thread counts, warm-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from detector.config import PROVIDER_NAMES, RuntimeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionInfo:
    """What a session runs on: the provider that took the graph and its inputs."""

    provider: str
    requested: tuple[str, ...]
    available: tuple[str, ...]
    input_name: str
    input_shape: tuple[int | str | None, ...]
    output_names: tuple[str, ...]


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


def make_session(
    path: Path, runtime: RuntimeConfig, *, what: str
) -> tuple[ort.InferenceSession, SessionInfo]:
    """Open ``path`` with the preferred available provider and deliberate thread counts."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = runtime.intra_op_threads
    opts.inter_op_num_threads = runtime.inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise
    requested = choose_providers(runtime)
    session = ort.InferenceSession(str(path), sess_options=opts, providers=requested)
    inp = session.get_inputs()[0]
    info = SessionInfo(
        provider=session.get_providers()[0],
        requested=tuple(requested),
        available=tuple(ort.get_available_providers()),
        input_name=inp.name,
        input_shape=tuple(inp.shape),
        output_names=tuple(o.name for o in session.get_outputs()),
    )
    log.info(
        "onnx_session_opened",
        extra={
            "model": what,
            "path": str(path),
            "provider": info.provider,
            "requested_providers": list(info.requested),
            "intra_op_threads": runtime.intra_op_threads,
            "input_shape": [str(d) for d in info.input_shape],
        },
    )
    return session, info


def static_batch_size(info: SessionInfo) -> int | None:
    """The model's fixed batch dimension, or None when it is dynamic."""
    first = info.input_shape[0] if info.input_shape else None
    return first if isinstance(first, int) and first > 0 else None
