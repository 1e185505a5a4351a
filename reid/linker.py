"""The linking core: tracklets in, global identities and match events out.

Pure: no Kafka, Redis, Qdrant or clock. Time is the tracklets' own capture
time, global ids come from a function passed in, distances to stored
tracklets come from the caller (the store computes them once, at upsert).

How it links. Every tracklet is a node; an edge joins two tracklets whose
distance is under :attr:`LinkerParams.link_distance` and whose cameras and
times allow one person to be both (the topology's transit bounds; never two
tracklets overlapping in time on one camera). Identities are the clusters of
a best-first, constrained agglomeration over the edges: the closest pair is
joined first, and two clusters join only if *every* pair of their members is
consistent (no overlap on one camera, nobody in two places at once, nobody
faster than the minimum transit). A person seen by three cameras is linked
through the middle one, because clusters, not pairs, are compared.

Live and revisited. Each new tracklet re-runs that agglomeration over its
connected component of recent tracklets (the sliding window,
:attr:`LinkerParams.revisit_window_s`), so earlier decisions are revisited as evidence
comes in: identities merge when a bridging tracklet shows they are one
person, and a tracklet moves out of an identity (a split) when a better,
consistent explanation appears. Tracklets older than the window are frozen:
they keep their identity and act as anchors that new tracklets can join.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from common.units import NS_PER_S
from reid.calibration import CalibrationParams, CameraMeans, PairStats, TransitPrior, transit_bin
from reid.corrections import Constraints
from reid.topology import Topology
from schemas.messages import Match, MatchedTracklet

NS = NS_PER_S

COLOUR, GREY = "colour", "grey"
"""Comparison spaces: colour crops' vectors, or greyscale crops' vectors (like with like
when one camera of the pair sees no colour)."""

RELINK_EVERY_ADD_MAX_LIVE = 500
"""Up to this many live tracklets, every new tracklet recalibrates and re-clusters the
whole window (see :meth:`Linker._relinks_every_add`): the identities then depend only
on the tracklets held, not on the order they arrived in. It costs about 7 ms a
tracklet at 200 live, 40 ms at 500 and 150 ms at 1000 (one core of this machine,
512-d vectors, 12 cameras): above this many, the doubling epochs and every
:data:`RECALIBRATE_EVERY` again."""

RECALIBRATE_EVERY = 256
"""Above :data:`RELINK_EVERY_ADD_MAX_LIVE` live tracklets, recalibrate every this many."""

RECALIBRATE_MAX_LIVE = 1500
"""Above this many live tracklets a recalibration (quadratic in the window) is skipped."""

AVERAGE_LINK_SHARE = 0.75
"""Two clusters join only when their members' mean calibrated score is at most this
share of ``z_link`` (see :meth:`Linker._alike`)."""

REFINE_ROUNDS = 3
"""Passes of :meth:`Linker._refine` at most (it stops when a pass moves nothing)."""

COLD_SCORE_SCALE = 0.05
"""A cold pair's score: ``z_link + (distance - link_distance) / this``, so cold and
calibrated edges sort on one scale (a cold edge at the threshold scores ``z_link``)."""


@dataclass
class Sighting:
    """A tracklet as the linker sees it.

    ``mean`` is the (D,) unit aggregate vector, ``shots`` (K, D) unit per-crop
    vectors (may be empty).
    """

    tracklet_id: str
    camera_id: str
    ts_start_ns: int
    ts_end_ns: int
    mean: np.ndarray
    shots: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    thumbnail_ref: str = ""
    grey_mean: np.ndarray | None = None
    greyscale: bool = False

    def vector(self, space: str) -> np.ndarray:
        """The aggregate to compare in ``space`` ("grey": of greyscale crops, when known)."""
        if space == GREY and self.grey_mean is not None:
            return self.grey_mean
        return self.mean


@dataclass(frozen=True)
class Neighbour:
    """A stored tracklet the store found near a new one (cosine distance of the means)."""

    tracklet_id: str
    camera_id: str
    ts_start_ns: int
    ts_end_ns: int
    global_id: str
    distance: float
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class _Span:
    camera_id: str
    ts_start_ns: int
    ts_end_ns: int


class LinkerParams(BaseModel):
    """Linking settings: the one definition of each one's default, bounds and description
    (the attribute docstring); ``crosscam reid``'s settings inherit these fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    link_distance: float = Field(0.25, gt=0.0, le=2.0)
    """Largest distance of an edge on a *cold* camera pair (too few tracklets to
    calibrate, see :mod:`reid.calibration`), or on every pair with calibration off:
    cosine distance of the tracklets' vectors, blended with the shots'. Raising it
    links more (recall up) and joins more different people (precision down)."""

    shot_weight: float = Field(0.0, ge=0.0, le=1.0)
    """Share of the multi-shot distance (mean over each shot of its nearest shot on
    the other tracklet) in the edge distance; 0 uses the mean vectors only."""

    overlap_tolerance_s: float = Field(0.5, ge=0.0, le=10.0)
    """On different cameras, a time overlap up to this is tolerated (tracklet ends
    are only as exact as the tracker's last matched frame). On one camera no overlap
    is ever tolerated."""

    revisit_window_s: float = Field(300.0, gt=0.0)
    """How far back (from the latest tracklet end) decisions are revisited; older
    tracklets are frozen. Raising it fixes more late evidence and costs memory and
    CPU per tracklet."""

    max_live_tracklets: int = Field(2000, ge=10, le=1_000_000)
    """Cap on tracklets in the window (bounded memory whatever the traffic); beyond
    it the oldest are frozen early."""

    max_anchors: int = Field(20000, ge=10, le=10_000_000)
    """Cap on frozen tracklets kept as anchors (camera, time and identity only)."""

    search_limit: int = Field(30, ge=1, le=1000)
    """Neighbours to ask the store for per new tracklet."""

    link_same_camera: bool = True
    """Also link tracklets on one camera directly (a person who leaves the view and
    re-enters, or a track the tracker broke). With calibration such a pair is judged
    against that camera's own strangers. Measured over seven cuts (GT and
    detector+tracker tracklets): on, mean link F1 0.805; off, 0.747. Without
    calibration it lowered live F1 at every threshold tried: turn it off with
    calibration off."""

    same_camera_link_distance: float = Field(0.15, ge=0.0, le=2.0)
    """Largest distance of a same-camera link on a camera not yet calibrated."""

    refine_moves: bool = True
    """After the greedy clustering of a calibrated window, move each tracklet to the
    cluster it fits better on average (see :meth:`Linker._refine`): undoes a tracklet
    that a chain of links put in the wrong identity, which then blocked the right
    merges. Five cuts, ``--perturb 10`` means, link F1 better on 7 of 10 and IDF1 on
    all 10 (on demand and every box; see the README)."""

    calibration: CalibrationParams = Field(default_factory=CalibrationParams)
    """Per camera pair self-calibration of links (:mod:`reid.calibration`)."""


@dataclass(frozen=True)
class SearchScope:
    """What the store should search for a new tracklet: cameras (None = any) and a time range."""

    cameras: frozenset[str] | None
    ts_from_ns: int
    ts_to_ns: int
    limit: int
    max_distance: float


@dataclass
class LinkResult:
    """What one new tracklet changed.

    ``events`` to publish (link/new_identity for the tracklet, then merges and
    splits); ``assigned`` every tracklet whose global id is new or changed
    (tracklet id → global id), to write back to the store.
    """

    events: list[Match]
    assigned: dict[str, str]


def shot_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Symmetric multi-shot distance of two (K, D) unit sets: mean best-match cosine distance."""
    if a.size == 0 or b.size == 0:
        return None
    d = 1.0 - a @ b.T
    return float(0.5 * (d.min(axis=1).mean() + d.min(axis=0).mean()))


class Linker:
    """Assigns global identities to tracklets as they finish (see the module docstring).

    Args:
        topology: cameras, links and transit times.
        params: linking settings.
        new_global_id: returns a fresh global id each call (pass a counter; a
            test can pin ids).
    """

    def __init__(
        self, topology: Topology, params: LinkerParams, new_global_id: Callable[[], str],
        constraints: Constraints | None = None,
    ) -> None:  # fmt: skip
        self.topology = topology
        self.params = params
        self._new_id = new_global_id
        self.constraints = constraints if constraints is not None else Constraints()
        """Operators' corrections (:mod:`reid.corrections`), consulted by every reclustering."""
        self._live: OrderedDict[str, Sighting] = OrderedDict()
        self._anchors: OrderedDict[str, _Span] = OrderedDict()
        self._gid: dict[str, str] = {}
        self._edges: dict[str, dict[str, float]] = {}  # tracklet -> neighbour -> edge score
        self._dist: dict[frozenset[str], float] = {}  # edge -> raw cosine distance (for events)
        self._latest_end_ns = 0
        self._added = 0
        self._window_z: tuple[dict[str, int], np.ndarray] | None = None
        """(tracklet -> row, calibrated scores of every pair of the live window, NaN where
        none) as of the last whole-window rebuild; None once anything moved since."""
        self._means = CameraMeans(params.calibration.mean_prior_count)
        self._pairs = PairStats(params.calibration)
        self._transit = TransitPrior(params.calibration.transit_pseudo_links)
        self._centred_cache: dict[tuple[str, str], np.ndarray] = {}
        """(space, tracklet) -> its centred vector, while the camera means stay as they are."""

    # --- queries ----------------------------------------------------------------------

    def global_id(self, tracklet_id: str) -> str | None:
        """The identity of a tracklet the linker still holds (live or anchor)."""
        return self._gid.get(tracklet_id)

    def live_count(self) -> int:
        return len(self._live)

    def anchor_count(self) -> int:
        return len(self._anchors)

    def identities(self) -> dict[str, str]:
        """Tracklet id → global id for every tracklet held."""
        return dict(self._gid)

    def scope(self, sighting: Sighting) -> SearchScope:
        """Where the store should look for this tracklet's neighbours."""
        cams = self.topology.reachable(sighting.camera_id)
        if cams is not None and not self.params.link_same_camera:
            cams.discard(sighting.camera_id)
        gap_ns = int(self.topology.max_gap_s() * NS)
        return SearchScope(
            cameras=None if cams is None else frozenset(cams),
            ts_from_ns=sighting.ts_start_ns - gap_ns,
            ts_to_ns=sighting.ts_end_ns + gap_ns,
            limit=self.params.search_limit,
            max_distance=2.0 if self.params.calibration.enabled else self.params.link_distance,
        )

    # --- constraints ------------------------------------------------------------------

    def compatible(self, a: _Span | Sighting, b: _Span | Sighting, check_max: bool = False) -> bool:
        """Can one person be both sightings? ``check_max``: also within the longest transit."""
        first, second = (a, b) if a.ts_start_ns <= b.ts_start_ns else (b, a)
        gap_s = (second.ts_start_ns - first.ts_end_ns) / NS
        if first.camera_id == second.camera_id:
            if gap_s <= 0:
                return False
        elif gap_s < -self.params.overlap_tolerance_s:
            return False
        bounds = self.topology.transit_bounds(first.camera_id, second.camera_id)
        if bounds is None:
            return False
        lo, hi = bounds
        if first.camera_id != second.camera_id and gap_s < lo - self.params.overlap_tolerance_s:
            return False
        return not (check_max and gap_s > hi)

    def _span(self, tid: str) -> _Span | Sighting:
        return self._live[tid] if tid in self._live else self._anchors[tid]

    # --- the step ---------------------------------------------------------------------

    def add(self, sighting: Sighting, neighbours: Iterable[Neighbour] = ()) -> LinkResult:
        """Link one finished tracklet.

        Args:
            sighting: the new tracklet.
            neighbours: stored tracklets near it (from :meth:`scope`'s search).
                Tracklets the linker holds live are compared here whatever the
                store returned (the calibration needs every allowed pair);
                others join as frozen anchors with their stored identity,
                compared through their stored vector when the neighbour has one.

        A tracklet already held (a replay) changes nothing and emits nothing.
        """
        tid = sighting.tracklet_id
        if tid in self._gid:
            return LinkResult(events=[], assigned={})
        self._window_z = None  # the camera means move: rebuilt by a relink
        self._count_camera(sighting)
        relink = self._relinks_every_add(len(self._live) + 1)
        edges: dict[str, float] = {}
        for other in () if relink else self._live.values():  # a relink rebuilds these
            if not self.compatible(sighting, other, check_max=True):
                continue
            self._record(sighting, other)
            if other.camera_id == sighting.camera_id and not self.params.link_same_camera:
                continue
            scored = self._score(sighting, other)
            if scored is not None:
                edges[other.tracklet_id] = scored[0]
                self._dist[frozenset((tid, other.tracklet_id))] = scored[1]
        for n in neighbours:
            self._anchor_edge(sighting, n, edges)
        self._live[tid] = sighting
        self._edges[tid] = dict(edges)
        for o, d in edges.items():
            self._edges.setdefault(o, {})[tid] = d
        self._latest_end_ns = max(self._latest_end_ns, sighting.ts_end_ns)
        self._added += 1
        if relink or self._is_epoch(self._added):
            result = self._recalibrate(tid)
        else:
            result = self._recluster(tid)
        self._evict()
        return result

    def _anchor_edge(self, sighting: Sighting, n: Neighbour, edges: dict[str, float]) -> None:
        """An edge to a stored tracklet the linker does not hold live (a frozen anchor)."""
        if n.tracklet_id == sighting.tracklet_id or n.tracklet_id in self._live:
            return
        if n.tracklet_id not in self._anchors:
            if not n.global_id:
                return
            self._add_anchor(
                n.tracklet_id, _Span(n.camera_id, n.ts_start_ns, n.ts_end_ns), n.global_id
            )
        span = self._anchors[n.tracklet_id]
        if span.camera_id == sighting.camera_id and not self.params.link_same_camera:
            return
        if not self.compatible(sighting, span, check_max=True):
            return
        if n.vector is not None and n.vector.size == sighting.mean.size:
            other = Sighting(
                n.tracklet_id, n.camera_id, n.ts_start_ns, n.ts_end_ns, np.asarray(n.vector)
            )
            scored = self._score(sighting, other)
        else:
            scored = self._absolute(sighting.camera_id == n.camera_id, n.distance)
        if scored is not None:
            edges[n.tracklet_id] = scored[0]
            self._dist[frozenset((sighting.tracklet_id, n.tracklet_id))] = scored[1]

    def add_live(self, sighting: Sighting) -> LinkResult:
        """Link against the live window only (no store): for tests and the offline evaluation."""
        return self.add(sighting, ())

    # --- calibrated scores ------------------------------------------------------------

    def _count_camera(self, s: Sighting) -> None:
        self._centred_cache.clear()  # the camera's mean moves
        self._means.add(COLOUR, s.camera_id, s.mean)
        if s.greyscale or s.grey_mean is not None:
            self._means.add(GREY, s.camera_id, s.vector(GREY))

    @staticmethod
    def space(a: Sighting, b: Sighting) -> str:
        """Grey when either camera sees no colour and both have greyscale vectors, else colour."""
        has_grey = (a.greyscale or a.grey_mean is not None) and (
            b.greyscale or b.grey_mean is not None
        )
        return GREY if has_grey and (a.greyscale or b.greyscale) else COLOUR

    def _absolute(self, same_camera: bool, d: float) -> tuple[float, float] | None:
        """The uncalibrated rule: an absolute distance limit; (score, distance) or None."""
        p = self.params
        limit = p.same_camera_link_distance if same_camera else p.link_distance
        if d > limit:
            return None
        return p.calibration.z_link + (d - limit) / COLD_SCORE_SCALE, d

    def _centred(self, a: Sighting, b: Sighting) -> tuple[tuple[str, str, str], float]:
        """(statistics key, distance) of two sightings in their space, centred per camera."""
        sp = self.space(a, b)
        ca, cb = self._centred_vector(sp, a), self._centred_vector(sp, b)
        return PairStats.key(sp, a.camera_id, b.camera_id), float(1.0 - np.dot(ca, cb))

    def _centred_vector(self, space: str, s: Sighting) -> np.ndarray:
        key = (space, s.tracklet_id)
        v = self._centred_cache.get(key)
        if v is None:
            v = self._centred_cache[key] = self._means.centred(space, s.camera_id, s.vector(space))
        return v

    def _record(self, a: Sighting, b: Sighting) -> None:
        """Count an allowed pair's distance into its camera pair's statistics."""
        if self.params.calibration.enabled:
            self._pairs.add(*self._centred(a, b))

    def _score(self, a: Sighting, b: Sighting) -> tuple[float, float] | None:
        """(score, distance) of an edge between two sightings, or None for no edge.

        The score orders edges (lower = more alike); the distance is the raw
        cosine distance reported in match events. Same-camera edges keep
        their absolute limit; cross-camera ones are calibrated once warm.
        """
        raw = self.distance(a, b)
        cal = self.params.calibration
        same = a.camera_id == b.camera_id
        if not cal.enabled:
            return self._absolute(same, raw)
        key, d = self._centred(a, b)
        model = self._pairs.model(key)
        if model is None:
            return self._absolute(same, raw)
        z = model.z(d) - self._transit_bonus(a, b)
        return (z, raw) if z <= cal.z_link else None

    def _pair_z(self, a: Sighting, b: Sighting) -> float | None:
        """Calibrated score of two live sightings (one camera: against that camera's own
        strangers); None while their pair is cold or calibration is off."""
        if not self.params.calibration.enabled:
            return None
        key, d = self._centred(a, b)
        model = self._pairs.model(key)
        return None if model is None else model.z(d) - self._transit_bonus(a, b)

    def _transit_bonus(self, a: _Span | Sighting, b: _Span | Sighting) -> float:
        """Transit-time credit of two sightings (:class:`reid.calibration.TransitPrior`)."""
        if not self.params.calibration.transit_evidence:
            return 0.0
        first, second = (a, b) if a.ts_start_ns <= b.ts_start_ns else (b, a)
        gap_s = (second.ts_start_ns - first.ts_end_ns) / NS
        return self._transit.bonus(first.camera_id, second.camera_id, gap_s)

    def _alike(self, first: list[str], second: list[str]) -> bool:
        """Average linkage: two clusters join only if their members are alike *on average*.

        One edge joins two clusters; without this, two people who each have a
        chain of sightings merge wholesale through a single chance
        resemblance, and a second stranger on a camera joins a pair because
        he resembles one of its members. The mean calibrated score over every
        pair of live members (one camera's pairs against that camera's own
        strangers) must be at most :data:`AVERAGE_LINK_SHARE` of ``z_link``.
        """
        zs = [
            z
            for x in first
            if x in self._live
            for y in second
            if y in self._live and (z := self._z(x, y)) is not None
        ]
        return not zs or float(np.mean(zs)) <= self.params.calibration.z_link * AVERAGE_LINK_SHARE

    def _z(self, x: str, y: str) -> float | None:
        """:meth:`_pair_z` of two live tracklets, read from the window's table when it holds
        both (same definitions, computed at once by :meth:`_rebuild_edges`)."""
        if self._window_z is not None:
            rows, zm = self._window_z
            a, b = rows.get(x), rows.get(y)
            if a is not None and b is not None:
                v = zm[a, b]
                return None if np.isnan(v) else float(v)
        return self._pair_z(self._live[x], self._live[y])

    def calibration_summary(self) -> dict[str, dict[str, float]]:
        """Per camera pair: distances seen, stranger median and spread (once warm)."""
        return self._pairs.summary()

    def _relinks_every_add(self, live: int) -> bool:
        """Whether a new tracklet re-links the whole window (calibration on, window small enough).

        Decisions taken on the statistics of the moment and never rescored made
        the identities depend on the order tracklets arrived in (which a live
        run does not fix): over five cuts, recalibrating at other moments moved
        one cut's link F1 by up to 0.1. Re-linking the whole window at every
        tracklet makes the result a function of the window alone.
        """
        return self.params.calibration.enabled and live <= RELINK_EVERY_ADD_MAX_LIVE

    @staticmethod
    def _is_epoch(added: int) -> bool:
        """Recalibrate at 8, 16, 32, ... tracklets, then every :data:`RECALIBRATE_EVERY`."""
        return added >= 8 and (added & (added - 1) == 0 or added % RECALIBRATE_EVERY == 0)

    def _rebuild_edges(self, live: list[Sighting]) -> None:
        """Pair statistics and live-live edges recomputed from ``live`` (anchors' edges kept).

        Whole-window and vectorised (it runs at every tracklet, see
        :meth:`_relinks_every_add`): the same allowed pairs as :meth:`compatible`
        with ``check_max``, the same distances as :meth:`_centred`, recorded in the
        same order, and the same scores as :meth:`_score` (the unit tests hold it
        to those scalar definitions).
        """
        self._pairs.clear()
        for t in live:  # the live-live edges are rebuilt, anchors' edges kept
            self._edges[t.tracklet_id] = {
                o: e for o, e in self._edges.get(t.tracklet_id, {}).items() if o in self._anchors
            }
        if len(live) < 2:
            return
        i, j = self._allowed_pairs(live)
        if not i.size:
            return
        grey = np.array([t.greyscale for t in live])
        has_grey = grey | np.array([t.grey_mean is not None for t in live])
        pair_grey = has_grey[i] & has_grey[j] & (grey[i] | grey[j])
        d = np.empty(i.size, np.float64)
        gram: dict[str, np.ndarray] = {}

        def gram_of(space: str) -> np.ndarray:
            if space not in gram:
                c = np.stack([self._centred_vector(space, t) for t in live])
                gram[space] = c @ c.T
            return gram[space]

        for space, mask in ((COLOUR, ~pair_grey), (GREY, pair_grey)):
            if mask.any():
                d[mask] = 1.0 - gram_of(space)[i[mask], j[mask]]
        cam_names = sorted({t.camera_id for t in live})
        cam = np.array([cam_names.index(t.camera_id) for t in live])
        lo_cam, hi_cam = np.minimum(cam[i], cam[j]), np.maximum(cam[i], cam[j])
        k = len(cam_names)
        key_code = (pair_grey * k + lo_cam) * k + hi_cam  # one code a (space, camera pair)
        keys: dict[int, tuple[str, str, str]] = {}
        if self.params.calibration.enabled:  # statistics first, from every allowed pair
            for code in np.unique(key_code):
                sel = key_code == code
                n = int(np.flatnonzero(sel)[0])
                key = PairStats.key(
                    GREY if pair_grey[n] else COLOUR, cam_names[lo_cam[n]], cam_names[hi_cam[n]]
                )
                keys[int(code)] = key
                self._pairs.extend(key, d[sel])  # row-major: the order pairs were recorded in
        same = cam[i] == cam[j]
        keep = ~same | self.params.link_same_camera
        raw = self._raw_distances(live, i, j)
        p, cal = self.params, self.params.calibration
        z = np.full(i.size, np.nan)  # appearance alone
        for code, key in keys.items():
            model = self._pairs.model(key)
            if model is None:
                continue
            sel = key_code == code
            z[sel] = (d[sel] - model.median) / model.spread
        cold = np.isnan(z)
        z = z - self._fit_transit(live, i, j, cam, cam_names, z)
        score = np.where(~cold & (z <= cal.z_link), z, np.inf)
        limit = np.where(same, p.same_camera_link_distance, p.link_distance)
        absolute = np.where(raw <= limit, cal.z_link + (raw - limit) / COLD_SCORE_SCALE, np.inf)
        score = np.where(cold, absolute, score)
        for e in np.flatnonzero(keep & np.isfinite(score)):
            a, b = live[i[e]].tracklet_id, live[j[e]].tracklet_id
            self._edges[a][b] = self._edges[b][a] = float(score[e])
            self._dist[frozenset((a, b))] = float(raw[e])
        if self.params.calibration.enabled:
            self._window_z = self._window_table(live, grey, has_grey, cam, cam_names, gram_of)

    def _fit_transit(
        self,
        live: list[Sighting],
        i: np.ndarray,
        j: np.ndarray,
        cam: np.ndarray,
        cam_names: list[str],
        z: np.ndarray,
    ) -> np.ndarray:
        """Learn the transit profiles from the allowed pairs (i, j) and their appearance
        scores ``z`` (NaN when cold); return each pair's bonus.

        A confident link is a cross-camera pair under ``z_link`` whose two
        tracklets are each other's best-scoring candidate on the other's camera.
        """
        self._transit.clear()
        cal = self.params.calibration
        if not (cal.enabled and cal.transit_evidence) or not i.size:
            return np.zeros(i.size)
        n = len(live)
        first, second, gap_s = self._ordered(live, i, j)
        cross = cam[i] != cam[j]
        zz = np.where(cross & ~np.isnan(z), z, np.inf)
        table = np.full((n, n), np.inf)
        table[i, j] = zz
        table[j, i] = zz
        best = np.full((n, len(cam_names)), -1, np.int64)  # each tracklet's best on each camera
        for c in range(len(cam_names)):
            cols = np.flatnonzero(cam == c)
            if cols.size:
                sub = table[:, cols]
                arg = sub.argmin(axis=1)
                best[:, c] = np.where(np.isfinite(sub[np.arange(n), arg]), cols[arg], -1)
        confident = (zz <= cal.z_link) & (best[i, cam[j]] == j) & (best[j, cam[i]] == i)
        self._transit.fit(
            cam_names, cam[first][cross], cam[second][cross], gap_s[cross], confident[cross]
        )
        bonus = self._transit.table(cam_names)[cam[first], cam[second], transit_bin(gap_s)]
        return np.where(cross, bonus, 0.0)

    def _window_table(
        self,
        live: list[Sighting],
        grey: np.ndarray,
        has_grey: np.ndarray,
        cam: np.ndarray,
        cam_names: list[str],
        gram_of: Callable[[str], np.ndarray],
    ) -> tuple[dict[str, int], np.ndarray]:
        """:meth:`_pair_z` of every pair of ``live`` (allowed by the topology or not),
        as one (n, n) table with NaN where the pair is cold, for the clustering's
        averages (:meth:`_alike`, :meth:`_refine`)."""
        pair_grey = has_grey[:, None] & has_grey[None, :] & (grey[:, None] | grey[None, :])
        d = np.empty(pair_grey.shape, np.float64)
        for space, mask in ((COLOUR, ~pair_grey), (GREY, pair_grey)):
            if mask.any():
                d[mask] = 1.0 - gram_of(space)[mask]
        lo, hi = np.minimum.outer(cam, cam), np.maximum.outer(cam, cam)
        k = len(cam_names)
        code = (pair_grey * k + lo) * k + hi
        median = np.full(2 * k * k, np.nan)  # per code; NaN while the pair is cold
        spread = np.ones(2 * k * k)
        for c in range(2 * k * k):
            g, rest = divmod(c, k * k)
            a, b = divmod(rest, k)
            if a > b:
                continue
            model = self._pairs.model(
                PairStats.key(GREY if g else COLOUR, cam_names[a], cam_names[b])
            )
            if model is not None:
                median[c], spread[c] = model.median, model.spread
        z = (d - median[code]) / spread[code]
        if self.params.calibration.transit_evidence:
            first, second, gap_s = self._ordered(live, *np.indices(z.shape))
            z -= self._transit.table(cam_names)[cam[first], cam[second], transit_bin(gap_s)]
        return {t.tracklet_id: n for n, t in enumerate(live)}, z

    @staticmethod
    def _ordered(
        live: list[Sighting], i: np.ndarray, j: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For index pairs (i, j) of ``live`` (arrays of any one shape): the sighting that
        starts first, the other, and the gap from the first's end to the second's start in
        seconds (as :meth:`compatible` orders them)."""
        start = np.array([t.ts_start_ns for t in live], np.int64)
        end = np.array([t.ts_end_ns for t in live], np.int64)
        i_first = start[i] <= start[j]
        first, second = np.where(i_first, i, j), np.where(i_first, j, i)
        return first, second, (start[second] - end[first]) / NS

    def _allowed_pairs(self, live: list[Sighting]) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (i < j, row-major) of ``live`` that :meth:`compatible` allows with
        ``check_max``, computed for the whole window at once."""
        n = len(live)
        cam_names = sorted({t.camera_id for t in live})
        cam = np.array([cam_names.index(t.camera_id) for t in live])
        k = len(cam_names)
        lo = np.zeros((k, k))
        hi = np.zeros((k, k))
        linked = np.zeros((k, k), bool)
        for x, ca in enumerate(cam_names):  # transit bounds from first to second camera
            for y, cb in enumerate(cam_names):
                bounds = self.topology.transit_bounds(ca, cb)
                if bounds is not None:
                    linked[x, y] = True
                    lo[x, y], hi[x, y] = bounds
        i, j = np.triu_indices(n, 1)
        first, second, gap_s = self._ordered(live, i, j)
        cf, cs = cam[first], cam[second]
        same = cf == cs
        tol = self.params.overlap_tolerance_s
        ok = linked[cf, cs] & np.where(same, gap_s > 0, gap_s >= -tol)
        ok &= same | (gap_s >= lo[cf, cs] - tol)
        ok &= gap_s <= hi[cf, cs]
        return i[ok], j[ok]

    def _raw_distances(self, live: list[Sighting], i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """:meth:`distance` of each pair (i, j) of ``live``."""
        means = np.stack([np.asarray(t.mean, np.float64) for t in live])
        dm = 1.0 - (means @ means.T)[i, j]
        if self.params.shot_weight <= 0:
            return dm
        return np.array(
            [self.distance(live[a], live[b], float(m)) for a, b, m in zip(i, j, dm, strict=True)]
        )

    def restore(self, held: Iterable[tuple[Sighting, str]]) -> int:
        """After a restart: rebuild the live window from stored tracklets and their identities.

        ``held`` are (sighting, global id) of the tracklets that were live
        when the stage stopped (the store's newest ``window_s``). They rejoin
        as live tracklets, not frozen anchors: camera means, pair statistics
        and edges are rebuilt, so later tracklets revisit them exactly as if
        the stage had never stopped. Their ids are kept; nothing is emitted.
        Returns how many were restored.
        """
        n = 0
        for s, gid in sorted(held, key=lambda sg: (sg[0].ts_end_ns, sg[0].tracklet_id)):
            if s.tracklet_id in self._gid or not gid:
                continue
            self._count_camera(s)
            self._live[s.tracklet_id] = s
            self._gid[s.tracklet_id] = gid
            self._edges.setdefault(s.tracklet_id, {})
            self._latest_end_ns = max(self._latest_end_ns, s.ts_end_ns)
            self._added += 1
            n += 1
        if n:
            self._rebuild_edges(list(self._live.values()))
            self._evict()
        return n

    def _recalibrate(self, new_tid: str) -> LinkResult:
        """Recompute the live window's statistics and edges with today's camera means, re-cluster.

        Early decisions were taken cold (or on thin statistics); this revisits
        them as evidence accumulates. Returns the new tracklet's events first,
        then any merges and splits elsewhere in the window.
        """
        live = list(self._live.values())
        if not self.params.calibration.enabled or len(live) > RECALIBRATE_MAX_LIVE:
            return self._recluster(new_tid)
        self._rebuild_edges(live)
        # one clustering over the whole window: tracklets that shared an identity
        # but lost their edges must split, which per-component clustering cannot see
        # (the union of every live tracklet's component: the window and the anchors it touches)
        held = {t.tracklet_id for t in live}
        held |= {o for t in held for o in self._edges.get(t, {}) if o in self._anchors}
        nodes = sorted(held, key=lambda t: (self._span(t).ts_start_ns, t))
        old, new = self._cluster(nodes)
        return LinkResult(
            events=self._events(new_tid, old, new),
            assigned={t: g for t, g in new.items() if old[t] != g},
        )

    def distance(self, a: Sighting, b: Sighting, mean_distance: float | None = None) -> float:
        """Edge distance: mean-vector cosine distance blended with the multi-shot one."""
        dm = float(1.0 - np.dot(a.mean, b.mean)) if mean_distance is None else mean_distance
        w = self.params.shot_weight
        if w <= 0:
            return dm
        ds = shot_distance(a.shots, b.shots)
        return dm if ds is None else (1.0 - w) * dm + w * ds

    # --- clustering -------------------------------------------------------------------

    def _component(self, start: str) -> list[str]:
        seen = {start}
        stack = [start]
        while stack:
            u = stack.pop()
            for v in self._edges.get(u, {}):
                if v not in seen and (v in self._live or v in self._anchors):
                    seen.add(v)
                    if v in self._live:  # frozen anchors do not propagate the component
                        stack.append(v)
        return sorted(seen, key=lambda t: (self._span(t).ts_start_ns, t))

    def _recluster(self, new_tid: str) -> LinkResult:
        old, new = self._cluster(self._component(new_tid))
        return LinkResult(
            events=self._events(new_tid, old, new),
            assigned={t: g for t, g in new.items() if old[t] != g},
        )

    def _cluster(self, nodes: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
        """Constrained best-first agglomeration of ``nodes``; (old ids, new ids), applied."""
        parent = {t: t for t in nodes}
        members: dict[str, list[str]] = {t: [t] for t in nodes}

        def find(t: str) -> str:
            while parent[t] != t:
                parent[t] = parent[parent[t]]
                t = parent[t]
            return t

        def union(a: str, b: str) -> None:
            ra, rb = find(a), find(b)
            if ra == rb:
                return
            if len(members[ra]) < len(members[rb]):
                ra, rb = rb, ra
            parent[rb] = ra
            members[ra].extend(members.pop(rb))

        # frozen anchors of one identity start as one cluster
        first_anchor: dict[str, str] = {}
        for t in nodes:
            if t in self._anchors:
                g = self._gid[t]
                if g in first_anchor:
                    union(first_anchor[g], t)
                else:
                    first_anchor[g] = t
        for group in self.constraints.must_groups(nodes):  # operator merges: one identity
            for t in group[1:]:
                union(group[0], t)
        node_set = set(nodes)
        edge_list = sorted(
            (d, a, b)
            for a in nodes
            for b, d in self._edges.get(a, {}).items()
            if a < b and b in node_set and not (a in self._anchors and b in self._anchors)
        )
        for _, a, b in edge_list:
            ra, rb = find(a), find(b)
            if ra == rb:
                continue
            if self.constraints.separates(members[ra], members[rb]):
                continue  # an operator split them: never re-linked
            if all(
                self.compatible(self._span(x), self._span(y))
                for x in members[ra]
                for y in members[rb]
            ) and self._alike(members[ra], members[rb]):
                union(a, b)
        if self.params.refine_moves and self._window_z is not None:
            self._refine(nodes, find, members, parent)

        # the cluster holding an identity's earliest sighting keeps its id (ids stay with founders)
        clusters = sorted(
            members.values(), key=lambda m: min((self._span(t).ts_start_ns, t) for t in m)
        )
        old = {t: self._gid.get(t) for t in nodes}
        first_seen: dict[str, int] = {}
        for t, g_prev in old.items():
            if g_prev is not None:
                first_seen[g_prev] = min(
                    first_seen.get(g_prev, self._span(t).ts_start_ns), self._span(t).ts_start_ns
                )
        taken: set[str] = set()
        new: dict[str, str] = {}
        for m in clusters:
            votes: dict[str, int] = {}
            for t in m:
                voted = old[t]
                if voted is not None:
                    votes[voted] = votes.get(voted, 0) + (
                        len(nodes) + 1 if t in self._anchors else 1
                    )
            choice = next(
                (
                    g
                    for g in sorted(votes, key=lambda g: (-votes[g], first_seen[g], g))
                    if g not in taken
                ),
                None,
            )
            if choice is None:
                choice = self._new_id()
            taken.add(choice)
            for t in m:
                new[t] = choice
        for t, g in new.items():
            self._gid[t] = g
        return old, new

    def _refine(
        self,
        nodes: list[str],
        find: Callable[[str], str],
        members: dict[str, list[str]],
        parent: dict[str, str],
    ) -> None:
        """Move each live tracklet to the cluster it fits better, until none moves.

        The greedy agglomeration joins clusters in edge order and never takes a
        join back: a tracklet that a chain of links put with another person stays
        there, and its presence then keeps its own person's clusters apart
        (:meth:`_alike` averages over it). Here the measure the joins used is
        applied to single tracklets: a tracklet's fit to a cluster is the sum over
        its members of (calibrated score - ``AVERAGE_LINK_SHARE`` x ``z_link``), a
        join's own criterion summed rather than averaged (correlation clustering's
        objective). A tracklet moves to the cluster of one of its edges when its
        fit there is negative (it belongs on average) and lower than where it is,
        and the move breaks no constraint; frozen anchors and operators' merged
        groups stay where they are. At most :data:`REFINE_ROUNDS` passes.
        """
        assert self._window_z is not None
        rows, zm = self._window_z
        theta = self.params.calibration.z_link * AVERAGE_LINK_SHARE
        node_set = set(nodes)
        fixed = set(self._anchors)
        for group in self.constraints.must_groups(nodes):
            fixed.update(group)
        label = {t: find(t) for t in nodes}
        clusters: dict[str, list[str]] = {}
        for t in nodes:
            clusters.setdefault(label[t], []).append(t)

        def fit(t: str, ms: list[str]) -> float:
            idx = [rows[u] for u in ms if u != t and u in rows]
            v = zm[rows[t], idx]
            return float((v[~np.isnan(v)] - theta).sum())

        for _ in range(REFINE_ROUNDS):
            moved = False
            for t in nodes:
                if t in fixed or t not in rows:
                    continue
                here = label[t]
                best, best_fit = None, min(fit(t, clusters[here]), 0.0)
                for there in {label[u] for u in self._edges.get(t, {}) if u in node_set}:
                    if there == here:
                        continue
                    ms = clusters[there]
                    f = fit(t, ms)
                    if (
                        f < best_fit
                        and not self.constraints.separates([t], ms)
                        and all(self.compatible(self._span(t), self._span(y)) for y in ms)
                    ):
                        best, best_fit = there, f
                if best is None:
                    continue
                clusters[here].remove(t)
                if not clusters[here]:
                    del clusters[here]
                clusters[best].append(t)
                label[t] = best
                moved = True
            if not moved:
                break
        members.clear()
        for ms in clusters.values():
            members[ms[0]] = ms
            for t in ms:
                parent[t] = ms[0]

    def _events(
        self, new_tid: str | None, old: dict[str, str | None], new: dict[str, str]
    ) -> list[Match]:
        """The new tracklet's link/new_identity event (when given), then splits and merges."""
        emitted_ns = self._latest_end_ns  # message time, so a replay emits identical events
        events: list[Match] = []
        if new_tid is not None:
            events.append(self._tracklet_event(new_tid, new))
            emitted_ns = self._live[new_tid].ts_end_ns
        events.extend(self._changes(old, new, emitted_ns))
        return events

    def _tracklet_event(self, new_tid: str, new: dict[str, str]) -> Match:
        s = self._live[new_tid]
        gid = new[new_tid]
        mates = [t for t, g in new.items() if g == gid and t != new_tid]
        if mates:
            direct = sorted(
                (self._dist.get(frozenset((new_tid, o)), 0.0), o)
                for o in self._edges[new_tid]
                if new.get(o) == gid
            )
            matched = [
                MatchedTracklet(
                    tracklet_id=o,
                    camera_id=self._span(o).camera_id,
                    ts_start_ns=self._span(o).ts_start_ns,
                    ts_end_ns=self._span(o).ts_end_ns,
                    distance=round(d, 4),
                )
                for d, o in direct
            ]
            kind: Literal["link", "new_identity"] = "link"
        else:
            matched, kind = [], "new_identity"
        return Match(
            kind=kind,
            global_id=gid,
            tracklet_id=new_tid,
            camera_id=s.camera_id,
            ts_start_ns=s.ts_start_ns,
            ts_end_ns=s.ts_end_ns,
            matched=matched,
            thumbnail_ref=s.thumbnail_ref,
            ts_emitted_ns=s.ts_end_ns,
        )

    def _changes(
        self, old: dict[str, str | None], new: dict[str, str], emitted_ns: int
    ) -> list[Match]:
        events: list[Match] = []
        survivors = set(new.values())
        merged_into: dict[str, set[str]] = {}
        for t, g_old in old.items():
            if g_old is None or g_old == new[t]:
                continue
            if g_old in survivors:
                sp = self._span(t)
                events.append(
                    Match(
                        kind="split",
                        global_id=new[t],
                        tracklet_id=t,
                        camera_id=sp.camera_id,
                        ts_start_ns=sp.ts_start_ns,
                        ts_end_ns=sp.ts_end_ns,
                        merged_ids=[g_old],
                        ts_emitted_ns=emitted_ns,
                    )
                )
            else:
                merged_into.setdefault(new[t], set()).add(g_old)
        for g_new, olds in sorted(merged_into.items()):
            events.append(
                Match(
                    kind="merge", global_id=g_new, merged_ids=sorted(olds), ts_emitted_ns=emitted_ns
                )
            )
        return events

    # --- bounded memory ---------------------------------------------------------------

    def _add_anchor(self, tid: str, span: _Span, gid: str) -> None:
        self._anchors[tid] = span
        self._gid[tid] = gid
        while len(self._anchors) > self.params.max_anchors:
            old, _ = self._anchors.popitem(last=False)
            self._forget(old)

    def add_anchor(
        self, tracklet_id: str, camera_id: str, ts_start_ns: int, ts_end_ns: int, global_id: str
    ) -> None:
        """Hold a stored tracklet as a frozen anchor (its identity is fixed; e.g. after a restart)."""
        if tracklet_id not in self._gid:
            self._add_anchor(tracklet_id, _Span(camera_id, ts_start_ns, ts_end_ns), global_id)
            self._latest_end_ns = max(self._latest_end_ns, ts_end_ns)

    def relabel(self, assignment: dict[str, str]) -> None:
        """Give held tracklets new global ids (an operator's correction; others ignored)."""
        for t, g in assignment.items():
            if t in self._gid:
                self._gid[t] = g

    def _forget(self, tid: str) -> None:
        self._gid.pop(tid, None)
        for o in self._edges.pop(tid, {}):
            self._edges.get(o, {}).pop(tid, None)
            self._dist.pop(frozenset((tid, o)), None)

    def _evict(self) -> None:
        horizon = self._latest_end_ns - int(self.params.revisit_window_s * NS)
        while self._live:
            tid, s = next(iter(self._live.items()))
            if s.ts_end_ns >= horizon and len(self._live) <= self.params.max_live_tracklets:
                break
            self._live.popitem(last=False)
            gid = self._gid[tid]
            self._add_anchor(tid, _Span(s.camera_id, s.ts_start_ns, s.ts_end_ns), gid)
            # anchor-anchor edges never count again
            for o in list(self._edges.get(tid, {})):
                if o in self._anchors:
                    self._edges[tid].pop(o, None)
                    self._edges.get(o, {}).pop(tid, None)
                    self._dist.pop(frozenset((tid, o)), None)
