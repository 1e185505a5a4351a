"""Synthetic walkers: boxes, scores and appearance vectors per frame, for sequence tests and demos."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.units import NS_PER_S
from common.vectors import l2_normalise

FPS = 7.0
EPOCH_NS = 1_700_000_000 * NS_PER_S
DIM = 16


def ts(frame: int, fps: float = FPS) -> int:
    return EPOCH_NS + round(frame * NS_PER_S / fps)


@dataclass
class Walker:
    """A person walking in a straight line at constant speed (pixels per second)."""

    start_xy: tuple[float, float]  # box bottom-centre at frame 0
    velocity_px_s: tuple[float, float]
    height: float
    look: np.ndarray  # (DIM,) unit vector: what this person looks like
    visible: tuple[int, int] = (0, 10**9)  # frames [first, last) they are detected
    hidden: tuple[int, int] = (0, 0)  # frames [a, b) they are not detected (occlusion)
    score: float = 0.9

    def box(self, frame: int, fps: float = FPS) -> np.ndarray:
        t = frame / fps
        cx = self.start_xy[0] + self.velocity_px_s[0] * t
        bottom = self.start_xy[1] + self.velocity_px_s[1] * t
        w = 0.4 * self.height
        return np.array([cx - w / 2, bottom - self.height, cx + w / 2, bottom], dtype=np.float32)

    def seen(self, frame: int) -> bool:
        return self.visible[0] <= frame < self.visible[1] and not (
            self.hidden[0] <= frame < self.hidden[1]
        )


def looks(n: int, seed: int = 0) -> list[np.ndarray]:
    """n well-separated unit appearance vectors."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    return [q[:, i].astype(np.float32) for i in range(n)]


def frame_detections(
    walkers: list[Walker],
    frame: int,
    rng: np.random.Generator,
    noise: float = 0.05,
    jitter_px: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(boxes (N, 4), scores (N,), embeddings (N, DIM), walker index per row) of one frame."""
    boxes, scores, embs, who = [], [], [], []
    for k, w in enumerate(walkers):
        if not w.seen(frame):
            continue
        boxes.append(w.box(frame) + rng.normal(0, jitter_px, 4).astype(np.float32))
        scores.append(w.score)
        e = w.look + rng.normal(0, noise, DIM).astype(np.float32)
        embs.append(l2_normalise(e))
        who.append(k)
    if not boxes:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, DIM), np.float32),
            [],
        )
    return np.stack(boxes), np.array(scores, np.float32), np.stack(embs).astype(np.float32), who
