"""The ``crosscam`` command: one subcommand per job.

Each command lives in the module that owns it and exposes two functions::

    def configure(parser: argparse.ArgumentParser) -> None   # add arguments
    def main(args: argparse.Namespace) -> int                # run, return exit code

Modules are imported lazily, only for the command that runs, so ``crosscam
stack status`` does not load ONNX Runtime and a broken optional extra (torch)
only breaks the one command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# command path -> (module, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("stack", "up"): ("devstack.cli", "start the local Kafka, Redis and RTSP server"),
    ("stack", "status"): ("devstack.cli", "print the local stack's state as JSON"),
    ("stack", "down"): ("devstack.cli", "stop what `stack up` started"),
    ("schemas", "export"): ("schemas.cli", "write the public topics' JSON Schemas to a folder"),
    ("ingest",): ("ingest.cli", "publish one camera's frames to Kafka"),
    ("replay",): ("devstack.replay", "replay a recorded video into Kafka or as an RTSP camera"),
    ("detector",): ("detector.service", "run the detector stage (frames -> detections)"),
    ("tracker",): ("tracker.service", "run the tracker stage (detections -> tracklets)"),
    ("reid",): ("reid.service", "run the ReID stage (tracklets -> Qdrant, matches)"),
    ("gallery",): ("gallery.server", "serve the web gallery of identities and cameras"),
    ("run",): ("crosscam.run", "run every stage for a cameras file, supervised"),
    ("matches", "tail"): ("reid.tail", "print cross-camera matches as they arrive"),
    ("deadletters", "list"): ("crosscam.deadletters", "print a stage's dead letters"),
    ("deadletters", "replay"): ("crosscam.deadletters", "re-publish a stage's dead letters"),
    ("scenario", "pets"): ("evaluation.scenario", "cut PETS09-S2L1 into a multi-camera scenario"),
    ("models", "export-osnet"): ("reid.export", "export a torchreid OSNet to ONNX"),
    ("eval", "detect"): (
        "evaluation.detect",
        "detector precision/recall/AP50 against MOT ground truth",
    ),
    ("eval", "reid"): (
        "evaluation.appearance",
        "appearance vectors: same-vs-different AUC, rank-1",
    ),
    ("eval", "mot"): ("evaluation.mot", "single-camera tracking IDF1/MOTA/HOTA, with the peer"),
    ("eval", "mtmc"): ("evaluation.mtmc", "cross-camera linking precision/recall/IDF1"),
    ("bench", "ingest"): ("bench.ingest", "ingest frames per second and bytes per frame"),
    ("bench", "detector"): ("bench.detector", "detector stage throughput vs bare ONNX Runtime"),
    ("bench", "models"): ("bench.models", "every runtime x model: ms per frame/crop by batch"),
    ("bench", "tracker"): ("bench.tracker", "tracker core frames per second, with the peer"),
    ("bench", "linker"): ("bench.linker", "linker CPU per tracklet as the live window grows"),
    ("bench", "store"): ("bench.store", "vector store query latency, embedded vs local mode"),
    ("bench", "pipeline"): (
        "bench.pipeline",
        "whole pipeline capacity on N replayed cameras",
    ),
    ("demo",): ("crosscam.demo", "the main job: the whole pipeline on the PETS scenario"),
    ("tokens", "create"): ("crosscam.tokens", "create an access token (printed once)"),
    ("tokens", "list"): ("crosscam.tokens", "list access tokens (ids, names, roles, expiry)"),
    ("tokens", "revoke"): ("crosscam.tokens", "revoke an access token by its id"),
    ("anonymize",): ("crosscam.anonymize", "a copy of a video with every person obscured"),
    ("anonymize-live",): (
        "crosscam.anonymize_live",
        "publish obscured frames of chosen cameras to a pseudonymised topic",
    ),
    ("eval", "anonymize"): (
        "evaluation.anonymize",
        "share of ground-truth people the anonymizer obscures, frames per second",
    ),
    ("retention", "run"): ("reid.retention_job", "delete what is older than the retention limits"),
    ("erase",): ("reid.erasure_job", "erase one identity everywhere (store, thumbnails, Redis)"),
}


# Long-running stages: one BLAS thread each. OpenBLAS's worker threads spin between calls
# (a ReID stage's linker left one spinning at ~0.05 of a core, measured with perf under
# `crosscam bench pipeline`); its matrices are small and the cores are the stages' to share.
# Set before numpy loads; an operator's own setting wins.
SINGLE_BLAS_THREAD = {"ingest", "detector", "tracker", "reid", "gallery", "run", "anonymize-live"}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crosscam", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, (module, help_text) in COMMANDS.items():
        if len(path) == 1:
            p = sub.add_parser(path[0], help=help_text, description=help_text)
        else:
            if path[0] not in groups:
                g = sub.add_parser(path[0], help=f"{path[0]} commands")
                groups[path[0]] = g.add_subparsers(
                    dest="subcommand", metavar="SUBCOMMAND", required=True
                )
            p = groups[path[0]].add_parser(path[1], help=help_text, description=help_text)
        p.set_defaults(_module=module, _path=path)
    return parser


def _entry(module: object, path: tuple[str, ...], kind: str) -> object:
    """``configure``/``main``, or ``configure_<sub>``/``main_<sub>`` when one module serves several."""
    specific = f"{kind}_{path[-1].replace('-', '_')}"
    return getattr(module, specific, None) or getattr(module, kind)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    # First pass finds the command; its module then adds its own arguments.
    known, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")] or argv)
    path: tuple[str, ...] = known._path
    if path[0] in SINGLE_BLAS_THREAD:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    module = importlib.import_module(known._module)
    sub = parser
    for name in path:
        action = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction))
        sub = action.choices[name]
    _entry(module, path, "configure")(sub)  # type: ignore[operator]
    args = parser.parse_args(argv)
    return int(_entry(module, path, "main")(args) or 0)  # type: ignore[operator]


if __name__ == "__main__":
    raise SystemExit(main())
