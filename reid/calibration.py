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

* **Transit time as evidence** (:class:`TransitPrior`): on each camera pair,
  how much more often the window's *confident* links (mutual best matches
  under ``z_link`` on appearance alone) show a transit time than all allowed
  pairs do. Where a pair's people usually cross in a second or two, a
  candidate with that transit gets a bonus, in stranger sigmas; where the
  confident links show nothing particular (or there are none yet: a cold
  site), the bonus is zero. Learned per site from its own traffic, so no
  walking time is assumed; it only ever adds evidence (a long or unusual
  transit is not penalised: people wander).

A pair with fewer than ``min_pair_samples`` distances is *cold*: the linker
falls back to the generic absolute threshold (the model's own scale, strict),
so a fresh site links only near-identical appearances and never everything.
"""

from __future__ import annotations

import math
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
        transit_evidence: learn each camera pair's transit times from its
            confident links and credit a candidate whose transit they favour
            (:class:`TransitPrior`); off = transit times only bound links.
        transit_pseudo_links: how many confident links a pair's transit
            profile is worth before any are seen: the profile starts as that
            of all allowed pairs (no evidence) and moves towards the links'
            own as they accumulate (at this many links, half way).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    z_link: float = Field(-2.0, ge=-10.0, lt=0.0)
    min_pair_samples: int = Field(200, ge=5, le=100_000)
    max_pair_samples: int = Field(2000, ge=10, le=1_000_000)
    mean_prior_count: float = Field(4.0, ge=0.0)
    min_spread: float = Field(0.02, gt=0.0, le=1.0)
    transit_evidence: bool = True
    transit_pseudo_links: float = Field(10.0, gt=0.0)


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


TRANSIT_NATS_PER_SIGMA = 3.0
"""Log-likelihood ratio (nats) worth one stranger sigma of appearance near ``z_link``.
With unit-variance normal models of a stranger (z about 0) and of the same person
(z about mu), the appearance log-likelihood ratio is linear in z with slope
``|mu|``; on the colour pairs of the five cuts a same person's median z is about
-3 (the README's *Self-calibrating linking*)."""

TRANSIT_FIRST_BIN_S = 0.5
"""Transit times are binned in doublings: under this, then up to twice this, ..."""

TRANSIT_BINS = 16
"""Bins of a transit profile (the last holds everything beyond ~2^14 x the first)."""


def transit_bin(gap_s: np.ndarray) -> np.ndarray:
    """Bin of each transit time (seconds, end of one sighting to start of the next)."""
    g = np.asarray(gap_s, np.float64) / TRANSIT_FIRST_BIN_S
    b = np.floor(np.log2(np.maximum(g, 1.0))).astype(np.int64) + (g >= 1.0)
    return np.minimum(b, TRANSIT_BINS - 1)


class TransitPrior:
    """Transit-time evidence per camera pair, learned from the window's confident links.

    :meth:`fit` takes every allowed cross-camera pair of the window (its camera
    pair, transit time, and whether it is a confident link); :meth:`bonus` is
    then ``max(0, log(p_link / p_all)) / TRANSIT_NATS_PER_SIGMA`` for a
    transit's bin, where ``p_all`` is the pair's transit profile over all
    allowed pairs (mostly strangers) and ``p_link`` that of its confident links,
    shrunk towards ``p_all`` by ``pseudo_links`` (so none or few links give no
    bonus). Camera pairs are unordered (a walk either way).
    """

    def __init__(self, pseudo_links: float) -> None:
        self.pseudo_links = pseudo_links
        self._bonus: dict[tuple[str, str], np.ndarray] = {}

    @staticmethod
    def key(camera_from: str, camera_to: str) -> tuple[str, str]:
        """A walk's direction: from the earlier sighting's camera to the later one's."""
        return (camera_from, camera_to)

    def clear(self) -> None:
        self._bonus.clear()

    def fit(
        self,
        cameras: list[str],
        camera_from: np.ndarray,
        camera_to: np.ndarray,
        gap_s: np.ndarray,
        confident: np.ndarray,
    ) -> None:
        """Learn every camera pair's profile from its allowed cross-camera pairs: each pair's
        cameras (indices into ``cameras``, earlier sighting first), transit and whether it
        is a confident link."""
        self._bonus.clear()
        k = len(cameras)
        code = np.asarray(camera_from, np.int64) * k + np.asarray(camera_to, np.int64)
        cell = code * TRANSIT_BINS + transit_bin(gap_s)
        size = k * k * TRANSIT_BINS
        n_all = np.bincount(cell, minlength=size).reshape(k * k, TRANSIT_BINS).astype(np.float64)
        n_link = np.bincount(cell[confident], minlength=size).reshape(k * k, TRANSIT_BINS)
        for c in np.flatnonzero(n_link.sum(axis=1)):
            links = float(n_link[c].sum())
            p_all = (n_all[c] + 1.0) / (n_all[c].sum() + TRANSIT_BINS)
            p_link = (n_link[c] + self.pseudo_links * p_all) / (links + self.pseudo_links)
            key = self.key(cameras[c // k], cameras[c % k])
            self._bonus[key] = np.maximum(np.log(p_link / p_all), 0.0) / TRANSIT_NATS_PER_SIGMA

    def bonus(self, camera_from: str, camera_to: str, gap_s: float) -> float:
        """Stranger sigmas of credit for one candidate (0 on one camera or an unlearnt pair)."""
        if camera_from == camera_to:
            return 0.0
        b = self._bonus.get(self.key(camera_from, camera_to))
        if b is None:
            return 0.0
        g = gap_s / TRANSIT_FIRST_BIN_S  # transit_bin of one value, without numpy's overhead
        return float(b[0 if g < 1.0 else min(math.frexp(g)[1], TRANSIT_BINS - 1)])

    def table(self, cameras: list[str]) -> np.ndarray:
        """(k, k, bins) :meth:`bonus` by camera index (from, to) and transit bin."""
        k = len(cameras)
        out = np.zeros((k, k, TRANSIT_BINS))
        for x in range(k):
            for y in range(k):
                b = self._bonus.get(self.key(cameras[x], cameras[y]))
                if b is not None and x != y:
                    out[x, y] = b
        return out

    def summary(self) -> dict[str, list[float]]:
        """Per camera pair: the bonus of each transit bin (for logs and the evaluation)."""
        return {
            f"{a}-{b}": [round(float(x), 3) for x in v] for (a, b), v in sorted(self._bonus.items())
        }
