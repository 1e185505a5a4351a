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
from reid.corrections import Constraints
from reid.topology import Topology
from schemas.messages import Match, MatchedTracklet


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


@dataclass(frozen=True)
class Neighbour:
    """A stored tracklet the store found near a new one (cosine distance of the means)."""

    tracklet_id: str
    camera_id: str
    ts_start_ns: int
    ts_end_ns: int
    global_id: str
    distance: float


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
    """Largest distance of an edge (cosine distance of the tracklets' vectors,
    blended with the shots'). Raising it links more (recall up) and joins more
    different people (precision down)."""

    shot_weight: float = Field(0.0, ge=0.0, le=1.0)
    """Share of the multi-shot distance (mean over each shot of its nearest shot
    on the other tracklet) in the edge distance; 0 uses the mean vectors only.
    Raising it favours tracklets that share one very similar view (e.g. the same
    side of a person)."""

    overlap_tolerance_s: float = Field(0.5, ge=0.0, le=10.0)
    """On different cameras, a time overlap up to this is tolerated (tracklet ends
    are only as exact as the tracker's last matched frame). On one camera no
    overlap is ever tolerated."""

    revisit_window_s: float = Field(300.0, gt=0.0)
    """How far back (from the latest tracklet end) decisions are revisited; older
    tracklets are frozen. Raising it fixes more late evidence and costs memory
    and CPU per tracklet."""

    max_live_tracklets: int = Field(2000, ge=10, le=1_000_000)
    """Cap on tracklets in the window (bounded memory whatever the traffic);
    beyond it the oldest are frozen early."""

    max_anchors: int = Field(20000, ge=10, le=10_000_000)
    """Cap on frozen tracklets kept as anchors (camera, time and identity only,
    no vectors)."""

    search_limit: int = Field(30, ge=1, le=1000)
    """Neighbours to ask the store for per new tracklet."""

    link_same_camera: bool = False
    """Also link tracklets on one camera directly (a person who leaves the view
    and re-enters, or a track the tracker broke). Off by default: on the PETS
    scenario it lowered live link F1 at every same-camera threshold tried
    (0.1-0.3); one camera's tracklets still join one identity through other
    cameras."""

    same_camera_link_distance: float = Field(0.15, ge=0.0, le=2.0)
    """Largest distance of a link between two tracklets of one camera. Stricter
    than ``link_distance`` because one camera's lighting and angle make different
    people look closer to each other than across cameras (measured on the PETS
    scenario: same-camera links at the cross-camera threshold cost more precision
    than they gave recall)."""


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


class _UnionFind:
    """Disjoint sets of tracklet ids with their member lists (path halving, union by size)."""

    def __init__(self, items: list[str]) -> None:
        self.parent = {t: t for t in items}
        self.members: dict[str, list[str]] = {t: [t] for t in items}

    def find(self, t: str) -> str:
        """The root of ``t``'s set."""
        parent = self.parent
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    def union(self, a: str, b: str) -> None:
        """Join the sets of ``a`` and ``b`` (the larger one's root stays)."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra].extend(self.members.pop(rb))


class Linker:
    """Assigns global identities to tracklets as they finish (see the module docstring).

    Args:
        topology: cameras, links and transit times.
        params: linking settings.
        new_global_id: returns a fresh global id each call (pass a counter; a
            test can pin ids).
        constraints: operators' corrections (:mod:`reid.corrections`), consulted
            by every reclustering; shared with whoever applies corrections.
    """

    def __init__(
        self, topology: Topology, params: LinkerParams, new_global_id: Callable[[], str],
        constraints: Constraints | None = None,
    ) -> None:  # fmt: skip
        self.topology = topology
        self.params = params
        self._new_id = new_global_id
        self.constraints = constraints if constraints is not None else Constraints()
        self._live: OrderedDict[str, Sighting] = OrderedDict()
        self._anchors: OrderedDict[str, _Span] = OrderedDict()
        self._gid: dict[str, str] = {}
        self._edges: dict[str, dict[str, float]] = {}
        self._latest_end_ns = 0

    # --- queries ----------------------------------------------------------------------

    def global_id(self, tracklet_id: str) -> str | None:
        """The identity of a tracklet the linker still holds (live or anchor)."""
        return self._gid.get(tracklet_id)

    def live_count(self) -> int:
        """Tracklets inside the revisit window."""
        return len(self._live)

    def anchor_count(self) -> int:
        """Frozen tracklets kept as anchors."""
        return len(self._anchors)

    def identities(self) -> dict[str, str]:
        """Tracklet id → global id for every tracklet held."""
        return dict(self._gid)

    def scope(self, sighting: Sighting) -> SearchScope:
        """Where the store should look for this tracklet's neighbours."""
        cams = self.topology.reachable(sighting.camera_id)
        if cams is not None and not self.params.link_same_camera:
            cams.discard(sighting.camera_id)
        gap_ns = int(self.topology.max_gap_s() * NS_PER_S)
        return SearchScope(
            cameras=None if cams is None else frozenset(cams),
            ts_from_ns=sighting.ts_start_ns - gap_ns,
            ts_to_ns=sighting.ts_end_ns + gap_ns,
            limit=self.params.search_limit,
            max_distance=self.params.link_distance,
        )

    # --- constraints ------------------------------------------------------------------

    def compatible(self, a: _Span | Sighting, b: _Span | Sighting, check_max: bool = False) -> bool:
        """Can one person be both sightings? ``check_max``: also within the longest transit."""
        first, second = (a, b) if a.ts_start_ns <= b.ts_start_ns else (b, a)
        gap_s = (second.ts_start_ns - first.ts_end_ns) / NS_PER_S
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
            neighbours: stored tracklets near it (from :meth:`scope`'s search);
                ones the linker holds get their distance refined with shots,
                others join as frozen anchors with their stored identity.

        A tracklet already held (a replay) changes nothing and emits nothing.
        """
        tid = sighting.tracklet_id
        if tid in self._gid:
            return LinkResult(events=[], assigned={})
        p = self.params
        edges: dict[str, float] = {}
        for n in neighbours:
            if n.tracklet_id == tid:
                continue
            if n.tracklet_id in self._live:
                other: _Span | Sighting = self._live[n.tracklet_id]
                d = self.distance(sighting, self._live[n.tracklet_id], n.distance)
            else:
                if n.tracklet_id not in self._anchors:
                    if not n.global_id:
                        continue
                    self._add_anchor(
                        n.tracklet_id, _Span(n.camera_id, n.ts_start_ns, n.ts_end_ns), n.global_id
                    )
                other = self._anchors[n.tracklet_id]
                d = n.distance
            if not p.link_same_camera and other.camera_id == sighting.camera_id:
                continue
            limit = (
                p.same_camera_link_distance
                if other.camera_id == sighting.camera_id
                else p.link_distance
            )
            if d <= limit and self.compatible(sighting, other, check_max=True):
                edges[n.tracklet_id] = d
        self._live[tid] = sighting
        self._edges[tid] = dict(edges)
        for o, d in edges.items():
            self._edges.setdefault(o, {})[tid] = d
        self._latest_end_ns = max(self._latest_end_ns, sighting.ts_end_ns)
        result = self._recluster(tid)
        self._evict()
        return result

    def add_live(self, sighting: Sighting) -> LinkResult:
        """Link against the live window only, computing distances here (no store).

        For tests and the offline evaluation: the same as :meth:`add` with
        the neighbours the live window itself provides.
        """
        scope = self.scope(sighting)
        ns = []
        for o in self._live.values():
            if (
                (scope.cameras is not None and o.camera_id not in scope.cameras)
                or o.ts_end_ns < scope.ts_from_ns
                or o.ts_start_ns > scope.ts_to_ns
            ):
                continue
            d = float(1.0 - np.dot(sighting.mean, o.mean))
            ns.append(
                Neighbour(
                    o.tracklet_id,
                    o.camera_id,
                    o.ts_start_ns,
                    o.ts_end_ns,
                    self._gid[o.tracklet_id],
                    d,
                )
            )
        return self.add(sighting, ns)

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
        """Re-run the constrained agglomeration over ``new_tid``'s component and name
        its clusters; the events and the changed global ids that follow."""
        nodes = self._component(new_tid)
        clusters = self._agglomerate(nodes)
        old = {t: self._gid.get(t) for t in nodes}
        new = self._name_clusters(clusters, old, len(nodes))
        for t, g in new.items():
            self._gid[t] = g
        return LinkResult(
            events=self._events(new_tid, old, new),
            assigned={t: g for t, g in new.items() if old[t] != g},
        )

    def _agglomerate(self, nodes: list[str]) -> list[list[str]]:
        """Best-first, constrained agglomeration of ``nodes`` over their edges: the
        closest pair first; two clusters join only if every pair of members is
        compatible. Frozen anchors of one identity start as one cluster."""
        clusters = _UnionFind(nodes)
        first_anchor: dict[str, str] = {}
        for t in nodes:
            if t in self._anchors:
                g = self._gid[t]
                if g in first_anchor:
                    clusters.union(first_anchor[g], t)
                else:
                    first_anchor[g] = t
        for group in self.constraints.must_groups(nodes):  # operator merges: one identity
            for t in group[1:]:
                clusters.union(group[0], t)
        node_set = set(nodes)
        edge_list = sorted(
            (d, a, b)
            for a in nodes
            for b, d in self._edges.get(a, {}).items()
            if a < b and b in node_set and not (a in self._anchors and b in self._anchors)
        )
        for _, a, b in edge_list:
            ra, rb = clusters.find(a), clusters.find(b)
            if ra == rb:
                continue
            if self.constraints.separates(clusters.members[ra], clusters.members[rb]):
                continue  # an operator split them: never re-linked
            if all(
                self.compatible(self._span(x), self._span(y))
                for x in clusters.members[ra]
                for y in clusters.members[rb]
            ):
                clusters.union(a, b)
        return list(clusters.members.values())

    def _name_clusters(
        self, clusters: list[list[str]], old: dict[str, str | None], n_nodes: int
    ) -> dict[str, str]:
        """Tracklet id → global id. Each cluster, earliest first, takes the old id most
        of its members (anchors outvote everyone) had and no earlier cluster took,
        ties to the identity seen first (ids stay with founders); else a new id."""
        clusters = sorted(clusters, key=lambda m: min((self._span(t).ts_start_ns, t) for t in m))
        first_seen: dict[str, int] = {}
        for t, g_prev in old.items():
            if g_prev is not None:
                start = self._span(t).ts_start_ns
                first_seen[g_prev] = min(first_seen.get(g_prev, start), start)
        taken: set[str] = set()
        new: dict[str, str] = {}
        for m in clusters:
            votes: dict[str, int] = {}
            for t in m:
                voted = old[t]
                if voted is not None:
                    votes[voted] = votes.get(voted, 0) + (n_nodes + 1 if t in self._anchors else 1)
            ranked = sorted(votes, key=lambda g: (-votes[g], first_seen[g], g))
            choice = next((g for g in ranked if g not in taken), None)
            if choice is None:
                choice = self._new_id()
            taken.add(choice)
            for t in m:
                new[t] = choice
        return new

    def _events(self, new_tid: str, old: dict[str, str | None], new: dict[str, str]) -> list[Match]:
        s = self._live[new_tid]
        gid = new[new_tid]
        mates = [t for t, g in new.items() if g == gid and t != new_tid]
        emitted_ns = s.ts_end_ns  # message time, so a replay emits identical events
        events: list[Match] = []
        if mates:
            direct = sorted((d, o) for o, d in self._edges[new_tid].items() if new.get(o) == gid)
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
        events.append(
            Match(
                kind=kind,
                global_id=gid,
                tracklet_id=new_tid,
                camera_id=s.camera_id,
                ts_start_ns=s.ts_start_ns,
                ts_end_ns=s.ts_end_ns,
                matched=matched,
                thumbnail_ref=s.thumbnail_ref,
                ts_emitted_ns=emitted_ns,
            )
        )
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

    def _evict(self) -> None:
        horizon = self._latest_end_ns - int(self.params.revisit_window_s * NS_PER_S)
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
