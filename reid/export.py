"""``crosscam models export-osnet``: a torchreid OSNet to ONNX, with a parity check.

Needs the optional ``export`` extra (torchreid, torch, onnx); nothing else in
crosscam imports torch. The exported model takes N×3×256×128 float32 RGB
ImageNet-normalised crops (dynamic batch N) and returns N×512 features, the
interface of ``detector.zoo.EMBEDDER_ZOO``. After export, the same random
batch goes through torch and ONNX Runtime; the command fails (exit 1, no
"success" path printed) when they differ by more than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

INPUT_HW = (256, 128)
PARITY_BATCH = 4
DEFAULT_TOLERANCE = 1e-3
"""Largest absolute difference allowed between torch and ONNX Runtime features
(float32 kernels differ by ~1e-5 on these sizes; 1e-3 leaves room, still catches a wrong graph)."""


def export_osnet(
    arch: str,
    weights: Path | None,
    out: Path,
    opset: int = 18,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict:
    """Export and check; returns the parity report. Raises RuntimeError when parity fails."""
    import onnxruntime as ort
    import torch
    import torchreid

    model = torchreid.models.build_model(name=arch, num_classes=1000, pretrained=False)
    if weights is not None:
        torchreid.utils.load_pretrained_weights(model, str(weights))
    model.eval()
    dummy = torch.randn(PARITY_BATCH, 3, *INPUT_HW)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        dummy,
        str(out),
        input_names=["input"],
        output_names=["features"],
        dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
        opset_version=opset,
    )
    with torch.no_grad():
        ref = model(dummy).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": dummy.numpy()})[0]
    one = sess.run(None, {"input": dummy.numpy()[:1]})[0]  # dynamic batch really works
    diff = float(np.abs(ref - got).max())
    report = {"out": str(out), "arch": arch, "weights": str(weights) if weights else "random init",
              "output_shape": list(got.shape), "max_abs_diff": diff, "batch1_shape": list(one.shape),
              "tolerance": tolerance, "ok": diff <= tolerance and one.shape[0] == 1}  # fmt: skip
    if not report["ok"]:
        raise RuntimeError(f"torch/ONNX parity failed: {report}")
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of the OSNet export command."""
    parser.add_argument("--arch", default="osnet_x0_25", help="torchreid model name")
    parser.add_argument(
        "--weights", type=Path, default=None, help="torchreid checkpoint (default: random init)"
    )
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument(
        "--opset",
        type=int,
        default=18,
        help="ONNX opset (18: no version conversion with torch 2.x exporters)",
    )
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)


def main(args: argparse.Namespace) -> int:
    """Export OSNet to ONNX and print the report; the exit status."""
    try:
        report = export_osnet(args.arch, args.weights, args.out, args.opset, args.tolerance)
    except ImportError as exc:
        print(
            json.dumps(
                {"error": f"needs the export extra (pip install 'crosscam[export]'): {exc}"}
            ),
            file=sys.stderr,
        )
        return 2
    except RuntimeError as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0
