"""Human corrections: what an operator said about identities, kept as linking constraints.

Pure: no Redis, Kafka or clock. An operator *splits* tracklets out of an
identity (they are not that person) or *merges* identities (they are one
person). Each becomes pairwise constraints between tracklet ids that the
linker consults before it joins two clusters (:meth:`Constraints.separates`)
and when it starts a reclustering (:meth:`Constraints.must_groups`):

* ``cannot``-link: the two tracklets are never put in one identity again,
  whatever the evidence (the linker never re-links what a person split);
* ``must``-link: the two tracklets always share one identity.

The latest word wins: a split removes must-links between the tracklets it
separates, a merge removes cannot-links between the identities it joins.
Constraints are serialised as short text records (:meth:`Constraints.records`)
so the service can persist them (Redis) and a restart keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.messages import Match

MAX_CONSTRAINTS = 1_000_000
"""Most pairs kept (bounded memory; a correction that would exceed it is refused)."""


class ConstraintLimit(ValueError):
    """A correction would hold more than :data:`MAX_CONSTRAINTS` pairs."""


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


@dataclass
class Constraints:
    """Cannot-link and must-link pairs of tracklet ids (see the module docstring)."""

    cannot: dict[str, set[str]] = field(default_factory=dict)
    must: set[tuple[str, str]] = field(default_factory=set)
    _groups: dict[str, str] | None = None

    def __len__(self) -> int:
        return sum(len(v) for v in self.cannot.values()) // 2 + len(self.must)

    def cannot_link(self, a: str, b: str) -> bool:
        """Whether an operator separated ``a`` and ``b``."""
        return b in self.cannot.get(a, ())

    def separates(self, xs: Iterable[str], ys: Sequence[str]) -> bool:
        """Whether any member of ``xs`` may not share an identity with any of ``ys``."""
        if not self.cannot:
            return False
        ys_set = set(ys)
        return any(not ys_set.isdisjoint(self.cannot.get(x, ())) for x in xs)

    def must_groups(self, nodes: Iterable[str]) -> list[list[str]]:
        """``nodes`` that must share an identity, grouped (groups of two or more only)."""
        if not self.must:
            return []
        root = self._roots()
        groups: dict[str, list[str]] = {}
        for t in nodes:
            if t in root:
                groups.setdefault(root[t], []).append(t)
        return [g for g in groups.values() if len(g) > 1]

    def _roots(self) -> dict[str, str]:
        if self._groups is None:
            parent: dict[str, str] = {}

            def find(t: str) -> str:
                parent.setdefault(t, t)
                while parent[t] != t:
                    parent[t] = parent[parent[t]]
                    t = parent[t]
                return t

            for a, b in self.must:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[rb] = ra
            self._groups = {t: find(t) for t in list(parent)}
        return self._groups

    def add_cannot(self, moved: Iterable[str], stay: Sequence[str]) -> list[str]:
        """Separate every ``moved`` tracklet from every ``stay`` one; the new records."""
        moved = list(moved)
        self._check_room(len(moved) * len(stay))
        out: list[str] = []
        for a in moved:
            for b in stay:
                if a == b or self.cannot_link(a, b):
                    continue
                self.cannot.setdefault(a, set()).add(b)
                self.cannot.setdefault(b, set()).add(a)
                self.must.discard(_pair(a, b))
                out.append(record("cannot", a, b))
        self._groups = None
        return out

    def add_must(self, anchor: str, others: Iterable[str], apart: Sequence[str] = ()) -> list[str]:
        """Join each of ``others`` to ``anchor``; clear cannot-links between ``others`` and
        ``apart`` (the other side of the merge). The new records."""
        others = [o for o in others if o != anchor]
        self._check_room(len(others))
        out: list[str] = []
        for o in others:
            p = _pair(anchor, o)
            if p not in self.must:
                self.must.add(p)
                out.append(record("must", *p))
            for b in (anchor, *apart):
                self.cannot.get(o, set()).discard(b)
                self.cannot.get(b, set()).discard(o)
        self._groups = None
        return out

    def _check_room(self, more: int) -> None:
        if len(self) + more > MAX_CONSTRAINTS:
            raise ConstraintLimit(f"more than {MAX_CONSTRAINTS} correction pairs")

    def records(self) -> list[str]:
        """Every constraint as a text record (see :func:`record`)."""
        out = [record("must", a, b) for a, b in sorted(self.must)]
        out += [
            record("cannot", a, b)
            for a, bs in sorted(self.cannot.items())
            for b in sorted(bs)
            if a < b
        ]
        return out

    @classmethod
    def from_records(cls, records: Iterable[str]) -> Constraints:
        """Constraints from :meth:`records` output, applied in the order given."""
        c = cls()
        for r in records:
            kind, a, b = parse_record(r)
            if kind == "cannot":
                c.add_cannot([a], [b])
            else:
                c.add_must(a, [b])
        return c


def record(kind: str, a: str, b: str) -> str:
    """One constraint as text: ``kind`` TAB ``a`` TAB ``b`` (tracklet ids hold no tabs)."""
    return f"{kind}\t{a}\t{b}"


def parse_record(text: str) -> tuple[str, str, str]:
    """Inverse of :func:`record` (ValueError when it is not one)."""
    parts = text.split("\t")
    if len(parts) != 3 or parts[0] not in ("cannot", "must") or not parts[1] or not parts[2]:
        raise ValueError(f"not a constraint record: {text[:80]!r}")
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class Member:
    """A stored tracklet of an identity, as a correction needs it."""

    tracklet_id: str
    camera_id: str
    ts_start_ns: int
    ts_end_ns: int


@dataclass
class Correction:
    """What a split or merge changes: new global ids, new constraint records, events."""

    assigned: dict[str, str]
    records: list[str]
    events: list[Match]


def plan_split(
    constraints: Constraints, gid: str, members: Sequence[Member], moved: Sequence[str],
    new_global_id: Callable[[], str], now_ns: int,
) -> Correction:  # fmt: skip
    """Take ``moved`` tracklets out of identity ``gid`` into a new one (``new_global_id()``,
    called only once the split is valid).

    Raises:
        KeyError: a moved tracklet is not in the identity.
        ValueError: nothing would stay in the identity (or nothing moves).
    """
    held = {m.tracklet_id: m for m in members}
    missing = [t for t in moved if t not in held]
    if missing:
        raise KeyError(missing[0])
    stay = [t for t in held if t not in set(moved)]
    if not moved or not stay:
        raise ValueError("a split must leave at least one tracklet on each side")
    if len(set(moved)) != len(moved):
        raise ValueError("a tracklet is listed twice")
    constraints._check_room(len(moved) * len(stay) + len(moved))
    new_gid = new_global_id()
    records = constraints.add_cannot(moved, stay)
    if len(moved) > 1:
        records += constraints.add_must(moved[0], moved[1:])
    events = [
        Match(
            kind="split",
            global_id=new_gid,
            tracklet_id=t,
            camera_id=held[t].camera_id,
            ts_start_ns=held[t].ts_start_ns,
            ts_end_ns=held[t].ts_end_ns,
            merged_ids=[gid],
            ts_emitted_ns=now_ns,
            by="operator",
        )  # fmt: skip
        for t in moved
    ]
    return Correction({t: new_gid for t in moved}, records, events)


def plan_merge(
    constraints: Constraints, into: str, groups: Mapping[str, Sequence[Member]], now_ns: int
) -> Correction:
    """Join identities ``groups`` (global id → its members) into ``into`` (one of them).

    Raises:
        ValueError: fewer than two identities, or ``into`` is not one of them.
        KeyError: an identity has no stored tracklets.
    """
    if len(groups) < 2 or into not in groups:
        raise ValueError("a merge needs two or more identities, 'into' among them")
    empty = [g for g, ms in groups.items() if not ms]
    if empty:
        raise KeyError(empty[0])
    keep = [m.tracklet_id for m in groups[into]]
    anchor = keep[0]
    others = [m.tracklet_id for g, ms in groups.items() if g != into for m in ms]
    records = constraints.add_must(anchor, keep[1:] + others, apart=keep)
    merged = sorted(g for g in groups if g != into)
    event = Match(
        kind="merge", global_id=into, merged_ids=merged, ts_emitted_ns=now_ns, by="operator"
    )
    return Correction({t: into for t in others}, records, [event])
