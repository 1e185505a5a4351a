"""OSNet export with randomly initialised weights (needs the `export` extra: torch,
torchreid, onnx). Not part of `make test`: torch from PyPI is a multi-GB CUDA
build. Run with `make test-export`, which installs the extra in its own venv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from reid.export import export_osnet


def test_export_random_osnet_has_dynamic_batch_and_matches_torch(tmp_path: Path) -> None:
    out = tmp_path / "osnet.onnx"
    report = export_osnet("osnet_x0_25", None, out)
    assert report["ok"] and report["max_abs_diff"] < 1e-3
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for batch in (1, 3, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 256, 128)).astype(np.float32)
        (y,) = sess.run(None, {name: x})
        assert y.shape == (batch, 512)
