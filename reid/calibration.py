"""Self-calibration of cross-camera distances: what "close" means for each camera pair.

One absolute cosine threshold fails on a real network: a greyscale (IR,
night) camera, a colour cast, noise, low resolution or heavy compression
shift *all* distances between that camera and the others, same person or
not, while the ranking stays good. Two corrections, both learned online from
the traffic itself, with no labels:

* **Camera-aware centring** (:class:`CameraMeans`): each camera's running mean
  appearance vector is subtracted before comparing. What every person on a
  camera shares (its colour balance, its blur, its sensor) is the camera, not
  the person; removing it leaves the person. After centring, two different
  people are roughly uncorrelated (distance near 1) on any camera pair. The
  mean is shrunk towards zero while a camera has few tracklets
  (``n / (n + prior_count)``), so one tracklet does not centre on itself.
* **Per-pair distance statistics** (:class:`PairStats`): for each camera pair
  (and comparison space, see :mod:`reid.linker`), the distances between every
  pair of tracklets the topology would allow to be one person. Most such
  pairs are different people (one person has one match among the dozens a
  camera sees within the transit window), so the upper half of that
  distribution is the different-person distribution, nearly uncontaminated:
  its median and its upper spread ``(Q75 - Q50) / 0.674`` (a normal's sigma)
  describe "a stranger" on that pair. A link needs a distance that a stranger
  reaches rarely: ``z = (d - median) / spread`` at most ``z_link``.

A pair with fewer than ``min_pair_samples`` distances is *cold*: the linker
falls back to the generic absolute threshold (the model's own scale, strict),
so a fresh site links only near-identical appearances and never everything.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

NORMAL_IQR_HALF = 0.6745
"""Q75 - Q50 of a standard normal: turns the upper spread into a sigma."""


class CalibrationParams(BaseModel):
    """How distances are calibrated (see the module docstring).

    Attributes:
        enabled: calibrate; off = the absolute ``link_distance`` everywhere
            (the behaviour before calibration; for comparison).
        z_link: largest calibrated score of a link, in stranger sigmas below
            the pair's stranger median. -2 admits about 2 % of strangers under
            a normal model; the constrained clustering rejects most of those
            (one person is in one place at a time). Lowering it (more
            negative) links less.
        min_pair_samples: distances a camera pair needs before its statistics
            are used (below: cold, absolute threshold). About 15 tracklets on
            each camera of a pair within the transit window give 200. Fewer
            (30 was tried) let a small site's few people, met again and again,
            pass for "strangers": the model collapses and nothing links.
        max_pair_samples: distances kept per pair (the most recent), so the
            statistics follow a camera whose look changes (day to night).
        mean_prior_count: a camera's mean is weighted ``n / (n + this)``.
        min_spread: floor of a pair's stranger spread (cosine distance), so a
            pair of near-identical strangers cannot make every distance
            extreme.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    z_link: float = Field(-2.0, ge=-10.0, lt=0.0)
    min_pair_samples: int = Field(200, ge=5, le=100_000)
    max_pair_samples: int = Field(2000, ge=10, le=1_000_000)
    mean_prior_count: float = Field(4.0, ge=0.0)
    min_spread: float = Field(0.02, gt=0.0, le=1.0)


class CameraMeans:
    """Running mean appearance vector per (space, camera), and centring by it."""

    def __init__(self, prior_count: float) -> None:
        self.prior_count = prior_count
        self._sum: dict[tuple[str, str], np.ndarray] = {}
        self._n: dict[tuple[str, str], int] = {}

    def add(self, space: str, camera_id: str, vector: np.ndarray) -> None:
        """Count one tracklet's unit vector into its camera's mean."""
        key = (space, camera_id)
        v = np.asarray(vector, np.float64)
        self._sum[key] = self._sum.get(key, np.zeros_like(v)) + v
        self._n[key] = self._n.get(key, 0) + 1

    def count(self, space: str, camera_id: str) -> int:
        return self._n.get((space, camera_id), 0)

    def centred(self, space: str, camera_id: str, vector: np.ndarray) -> np.ndarray:
        """``vector`` minus its camera's (shrunk) mean, unit length."""
        key = (space, camera_id)
        n = self._n.get(key, 0)
        v = np.asarray(vector, np.float64)
        if n:
            v = v - self._sum[key] / (n + self.prior_count)
        norm = float(np.linalg.norm(v))
        return v / norm if norm > 1e-12 else v


@dataclass(frozen=True)
class StrangerModel:
    """What a different person's distance looks like on one camera pair."""

    median: float
    spread: float
    samples: int

    def z(self, distance: float) -> float:
        """Stranger sigmas below (negative) or above the stranger median."""
        return (distance - self.median) / self.spread


class PairStats:
    """The recent distances of allowed tracklet pairs, per (space, camera pair)."""

    def __init__(self, params: CalibrationParams) -> None:
        self.params = params
        self._d: dict[tuple[str, str, str], deque[float]] = {}
        self._models: dict[tuple[str, str, str], StrangerModel | None] = {}

    @staticmethod
    def key(space: str, camera_a: str, camera_b: str) -> tuple[str, str, str]:
        a, b = sorted((camera_a, camera_b))
        return (space, a, b)

    def add(self, key: tuple[str, str, str], distance: float) -> None:
        q = self._d.get(key)
        if q is None:
            q = self._d[key] = deque(maxlen=self.params.max_pair_samples)
        q.append(float(distance))
        self._models.pop(key, None)

    def extend(self, key: tuple[str, str, str], distances: np.ndarray) -> None:
        """:meth:`add` each of ``distances``, in order."""
        q = self._d.get(key)
        if q is None:
            q = self._d[key] = deque(maxlen=self.params.max_pair_samples)
        q.extend(float(x) for x in distances)
        self._models.pop(key, None)

    def clear(self) -> None:
        self._d.clear()
        self._models.clear()

    def model(self, key: tuple[str, str, str]) -> StrangerModel | None:
        """The pair's stranger model, or None while the pair is cold."""
        if key in self._models:
            return self._models[key]
        q = self._d.get(key)
        m: StrangerModel | None = None
        if q is not None and len(q) >= self.params.min_pair_samples:
            arr = np.fromiter(q, np.float64, len(q))
            med, q75 = np.percentile(arr, [50, 75])
            spread = max(float(q75 - med) / NORMAL_IQR_HALF, self.params.min_spread)
            m = StrangerModel(float(med), spread, len(q))
        self._models[key] = m
        return m

    def summary(self) -> dict[str, dict[str, float]]:
        """Per pair: samples, median and spread (for logs and the evaluation report)."""
        out: dict[str, dict[str, float]] = {}
        for key in sorted(self._d):
            m = self.model(key)
            name = f"{key[0]}:{key[1]}-{key[2]}"
            out[name] = {"samples": float(len(self._d[key]))}
            if m is not None:
                out[name].update(median=round(m.median, 4), spread=round(m.spread, 4))
        return out
