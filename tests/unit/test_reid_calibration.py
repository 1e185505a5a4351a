"""Self-calibrating linking: camera pairs whose distances are shifted, cold starts, greyscale pairs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from itertools import count

import numpy as np

from reid.calibration import (
    TRANSIT_BINS,
    CalibrationParams,
    PairStats,
    TransitPrior,
    transit_bin,
)
from reid.linker import NS, Linker, LinkerParams, Sighting
from reid.topology import Topology
from schemas.cameras import Camera, CamerasFile, Link

DIM = 64


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def two_cameras() -> Topology:
    cams = [Camera(id="a"), Camera(id="b")]
    return Topology(
        CamerasFile(
            window_s=120.0,
            cameras=cams,
            links=[Link(a="a", b="b", min_transit_s=1.0, max_transit_s=20.0)],
        )
    )


def corridor(
    cameras: Iterable[str], links: list[tuple[str, str, float, float]], window_s: float
) -> Topology:
    """Cameras and their (a, b, min transit s, max transit s) links."""
    return Topology(
        CamerasFile(
            window_s=window_s,
            cameras=[Camera(id=c) for c in cameras],
            links=[Link(a=a, b=b, min_transit_s=lo, max_transit_s=hi) for a, b, lo, hi in links],
        )
    )


def walk_through(
    people: int, camera_b_bias: float, person_noise: float = 0.35, seed: int = 0
) -> list[tuple[Sighting, int]]:
    """``people`` walk from camera a to camera b, one every 4 s; b adds a shared look to everyone.

    ``camera_b_bias`` is the weight of b's own look (its colour cast, its
    sensor) in every vector it produces: it moves all of b's distances to a,
    same person or not. Returns (sighting, person) in the order they end.
    """
    rng = np.random.default_rng(seed)
    persons = rng.normal(size=(people, DIM))
    cam_b = rng.normal(size=DIM) * np.sqrt(DIM) / np.sqrt(DIM)
    out = []
    for i in range(people):
        p = persons[i] / np.linalg.norm(persons[i])
        va = _unit(p + person_noise * rng.normal(size=DIM) / np.sqrt(DIM))
        vb = _unit(
            p
            + person_noise * rng.normal(size=DIM) / np.sqrt(DIM)
            + camera_b_bias * cam_b / np.linalg.norm(cam_b)
        )
        t = 4.0 * i
        out.append((Sighting(f"a{i}", "a", int(t * NS), int((t + 3) * NS), va), i))
        out.append((Sighting(f"b{i}", "b", int((t + 6) * NS), int((t + 9) * NS), vb), i))
    out.sort(key=lambda sp: sp[0].ts_end_ns)
    return out


def link_scores(lk: Linker, run: list[tuple[Sighting, int]]) -> tuple[float, float]:
    """Precision and recall of cross-camera same-identity pairs."""
    tp = fp = fn = 0
    for i, (s, p) in enumerate(run):
        for t, q in run[i + 1 :]:
            if s.camera_id == t.camera_id:
                continue
            same = lk.global_id(s.tracklet_id) == lk.global_id(t.tracklet_id)
            tp += same and p == q
            fp += same and p != q
            fn += (not same) and p == q
    return (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)


def linker(calibrated: bool = True) -> Linker:
    """Cross-camera links only: these scenes test the camera pair's calibration."""
    ids = count(1)
    # small scenes: warm after 30 distances (the default waits for more traffic)
    params = LinkerParams(
        calibration=CalibrationParams(enabled=calibrated, min_pair_samples=30),
        link_same_camera=False,
    )
    return Linker(two_cameras(), params, lambda: f"g{next(ids)}")


def test_shifted_camera_pair_still_links() -> None:
    """Camera b's look moves every distance to a past the absolute threshold; calibration links."""
    run = walk_through(40, camera_b_bias=1.5)
    d_same = [1 - float(s.mean @ t.mean) for s, p in run for t, q in run if p == q and s != t]
    assert min(d_same) > LinkerParams().link_distance  # no absolute-threshold link is possible
    absolute, calibrated = linker(calibrated=False), linker()
    for s, _ in run:
        absolute.add_live(s)
        calibrated.add_live(s)
    assert link_scores(absolute, run) == (0.0, 0.0)
    precision, recall = link_scores(calibrated, run)
    assert precision >= 0.8
    assert recall >= 0.8


def test_unshifted_pair_links_as_well_as_before() -> None:
    """Over six scenes (one scene's precision moves by a link or two with any change to
    the linker: 0.77-1.0 over these seeds, before and after whole-window re-linking)."""
    scores = []
    for seed in range(6):
        run = walk_through(40, camera_b_bias=0.0, seed=seed)
        lk = linker()
        for s, _ in run:
            lk.add_live(s)
        scores.append(link_scores(lk, run))
    precision, recall = np.mean(scores, axis=0)
    assert precision >= 0.85 and recall >= 0.9, scores
    assert min(p for p, _ in scores) >= 0.7, scores


def test_cold_start_does_not_link_everything() -> None:
    """Strangers who all look alike on this pair (b's look dominates): few or no links.

    Every distance is under the absolute threshold, so the cold phase links
    some; once the pair is calibrated (centred by b's mean), the strangers
    are told apart and the early links are undone.
    """
    rng = np.random.default_rng(3)
    shared = rng.normal(size=DIM)
    lk = linker()
    run = []
    for i in range(30):
        t = 4.0 * i
        va = _unit(shared + 0.5 * rng.normal(size=DIM) / np.sqrt(DIM))
        vb = _unit(shared + 0.5 * rng.normal(size=DIM) / np.sqrt(DIM))
        run.append((Sighting(f"a{i}", "a", int(t * NS), int((t + 3) * NS), va), 2 * i))
        run.append((Sighting(f"b{i}", "b", int((t + 6) * NS), int((t + 9) * NS), vb), 2 * i + 1))
    assert max(1 - float(s.mean @ t.mean) for s, _ in run for t, _ in run) < 0.25
    run.sort(key=lambda sp: sp[0].ts_end_ns)
    for s, _ in run:
        lk.add_live(s)
    a_ids = {lk.global_id(s.tracklet_id) for s, _ in run if s.camera_id == "a"}
    linked = sum(lk.global_id(s.tracklet_id) in a_ids for s, _ in run if s.camera_id == "b")
    assert linked <= 3  # of 30 strangers on b
    assert len(set(lk.identities().values())) >= 55


def test_a_cold_pair_uses_the_absolute_threshold() -> None:
    """Below min_pair_samples distances a pair has no model; its first links are strict."""
    stats = PairStats(CalibrationParams(min_pair_samples=5))
    key = PairStats.key("colour", "b", "a")
    assert key == ("colour", "a", "b")
    for d in (0.5, 0.6, 0.7, 0.8):
        stats.add(key, d)
    assert stats.model(key) is None
    stats.add(key, 0.9)
    m = stats.model(key)
    assert m is not None and m.median == 0.7 and m.z(0.7) == 0.0


def test_greyscale_pair_compares_greyscale_vectors() -> None:
    """A greyscale camera and a colour one: linked through the colour camera's grey vectors."""
    rng = np.random.default_rng(5)
    lk = linker()
    people = [_unit(rng.normal(size=DIM)) for _ in range(30)]
    colour_only = [_unit(rng.normal(size=DIM)) for _ in range(30)]  # what grey loses
    run = []
    for i, p in enumerate(people):
        t = 4.0 * i
        colour = _unit(p + 4.0 * colour_only[i])  # colour dominates what a colour camera sees
        a = Sighting(f"a{i}", "a", int(t * NS), int((t + 3) * NS), colour, grey_mean=p)
        b = Sighting(f"b{i}", "b", int((t + 6) * NS), int((t + 9) * NS), _unit(p), greyscale=True)
        run += [(a, i), (b, i)]
    run.sort(key=lambda sp: sp[0].ts_end_ns)
    colour_only_linker = linker()
    for s, _ in run:
        lk.add_live(s)
        colour_only_linker.add_live(dataclasses.replace(s, grey_mean=None, greyscale=False))
    precision, recall = link_scores(lk, run)
    assert precision >= 0.6 and recall >= 0.9
    assert link_scores(colour_only_linker, run)[1] < recall - 0.2  # colour vs grey: worse
    a0, b0 = (next(s for s, _ in run if s.tracklet_id == t) for t in ("a0", "b0"))
    assert Linker.space(a0, b0) == "grey"
    assert Linker.space(a0, a0) == "colour"


def _partition(lk: Linker, tids: list[str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for t in tids:
        groups.setdefault(lk.global_id(t) or t, set()).add(t)
    return {frozenset(g) for g in groups.values()}


def test_identities_do_not_depend_on_arrival_order() -> None:
    """The same tracklets, arriving in another order (a live run does not fix it): the
    same identities. Each tracklet re-links the whole window, so no decision taken on
    the statistics of its moment survives unrevised."""
    run = walk_through(30, camera_b_bias=1.0, seed=2)
    sightings = [s for s, _ in run]
    tids = [s.tracklet_id for s in sightings]
    in_order = linker()
    for s in sightings:
        in_order.add_live(s)
    rng = np.random.default_rng(7)
    for _ in range(3):
        shuffled = linker()
        for k in rng.permutation(len(sightings)):
            shuffled.add_live(sightings[k])
        assert _partition(shuffled, tids) == _partition(in_order, tids)
    assert len(_partition(in_order, tids)) < len(tids)  # something was linked


def test_window_rebuild_matches_the_pairwise_definitions() -> None:
    """The vectorised whole-window rebuild allows exactly the pairs ``compatible`` allows
    and scores them exactly as ``_score`` does: cold and calibrated pairs, one camera and
    two, a greyscale camera, overlaps, transit bounds and unlinked cameras."""
    rng = np.random.default_rng(11)
    topo = corridor(("a", "b", "c", "far"), [("a", "b", 2.0, 20.0), ("b", "c", 0.0, 8.0)], 60.0)
    ids = count(1)
    params = LinkerParams(  # some pairs stay cold (under 100 distances); loose cold limits
        calibration=CalibrationParams(min_pair_samples=100),
        link_distance=0.5,
        same_camera_link_distance=0.5,
    )
    lk = Linker(topo, params, lambda: f"g{next(ids)}")
    base = [_unit(rng.normal(size=DIM)) for _ in range(8)]
    for k in range(80):
        cam = ("a", "b", "c", "far")[int(rng.integers(4))]
        t0 = float(rng.uniform(0, 50))
        v = _unit(base[int(rng.integers(8))] + 0.1 * rng.normal(size=DIM))
        grey = cam == "c"
        lk.add_live(
            Sighting(f"t{k}", cam, int(t0 * NS), int((t0 + rng.uniform(0.5, 6)) * NS), v,
                     grey_mean=None if grey else _unit(v + 0.1 * rng.normal(size=DIM)),
                     greyscale=grey)
        )  # fmt: skip
    live = list(lk._live.values())
    assert len(live) == 80
    i, j = lk._allowed_pairs(live)
    allowed = set(zip(i.tolist(), j.tolist(), strict=True))
    expected = {
        (x, y)
        for x in range(len(live))
        for y in range(x + 1, len(live))
        if lk.compatible(live[x], live[y], check_max=True)
    }
    assert allowed == expected and 0 < len(expected) < len(live) * (len(live) - 1) // 2
    lk._rebuild_edges(live)
    warm = cold = 0
    for x, y in expected:
        a, b = live[x], live[y]
        scored = lk._score(a, b)
        got = lk._edges[a.tracklet_id].get(b.tracklet_id)
        if scored is None:
            assert got is None, (a, b)
            continue
        assert got is not None and abs(got - scored[0]) < 1e-4, (a, b, got, scored)  # f32 vs f64
        key, _ = lk._centred(a, b)
        warm += lk._pairs.model(key) is not None
        cold += lk._pairs.model(key) is None
    assert warm and cold  # both kinds of edge were checked
    credited = sum(lk._transit_bonus(live[x], live[y]) > 0 for x, y in expected)
    assert credited  # transit evidence was part of the scores checked
    rows, table = lk._window_z  # the clustering's table: every pair, allowed or not
    scored = unscored = 0
    for x in range(len(live)):
        for y in range(x + 1, len(live)):
            want = lk._pair_z(live[x], live[y])
            got = table[rows[live[x].tracklet_id], rows[live[y].tracklet_id]]
            if want is None:
                assert np.isnan(got), (live[x], live[y])
                unscored += 1
            else:
                assert abs(got - want) < 1e-4, (live[x], live[y], got, want)
                scored += 1
    assert scored > len(expected) and unscored  # beyond the allowed pairs; cold ones NaN


def three_cameras_in_a_row(people: int, noise: float, seed: int) -> list[tuple[Sighting, int]]:
    """People walk a -> b -> c, one every 3 s; each camera has its own look, and breaks
    half of them into two fragments (as a tracker does). Noisy vectors: the greedy
    clustering's chains put fragments with the wrong person."""
    rng = np.random.default_rng(seed)
    persons = rng.normal(size=(people, DIM))
    looks = {c: rng.normal(size=DIM) for c in "abc"}
    out = []
    for i in range(people):
        p = persons[i] / np.linalg.norm(persons[i])
        for k, c in enumerate("abc"):
            start = 3.0 * i + 8.0 * k
            parts = 1 + int(rng.random() < 0.5)
            for f in range(parts):
                t0 = start + f * 3.5 / parts
                v = _unit(
                    p
                    + noise * rng.normal(size=DIM) / np.sqrt(DIM)
                    + 0.8 * looks[c] / np.linalg.norm(looks[c])
                )
                out.append((Sighting(f"{c}{i}_{f}", c, int(t0 * NS), int((t0 + 3 / parts) * NS), v), i))  # fmt: skip
    out.sort(key=lambda sp: sp[0].ts_end_ns)
    return out


def _link_f1(lk: Linker, run: list[tuple[Sighting, int]]) -> float:
    precision, recall = link_scores(lk, run)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _gains_in_a_row(params: Callable[[bool], LinkerParams], seeds: int = 5) -> list[float]:
    """Per seed of :func:`three_cameras_in_a_row` (30 people, noise 1.5): link F1 with
    ``params(True)`` minus with ``params(False)``."""
    topo = corridor("abc", [("a", "b", 1.0, 20.0), ("b", "c", 1.0, 20.0)], 120.0)
    gains = []
    for seed in range(seeds):
        run = three_cameras_in_a_row(30, noise=1.5, seed=seed)
        f1 = {}
        for on in (False, True):
            ids = count(1)
            lk = Linker(topo, params(on), lambda ids=ids: f"g{next(ids)}")
            for s, _ in run:
                lk.add_live(s)
            f1[on] = _link_f1(lk, run)
        gains.append(f1[True] - f1[False])
    return gains


def test_refinement_moves_fragments_to_the_person_they_fit() -> None:
    """The greedy clustering never takes a join back; moving each tracklet to the cluster
    it fits better on average (``refine_moves``) links more of each person on noisy
    scenes, seed by seed (measured 0.78 -> 0.84 mean link F1 over ten seeds, better on
    all ten), and is a no-op where the greedy result is already consistent. Appearance
    alone (transit evidence off): with it, 0.884 -> 0.931, better on nine seeds of ten."""
    gains = _gains_in_a_row(
        lambda refine: LinkerParams(
            calibration=CalibrationParams(min_pair_samples=30, transit_evidence=False),
            refine_moves=refine,
        )
    )
    assert min(gains) >= 0.0, gains
    assert float(np.mean(gains)) >= 0.03, gains


def test_transit_bins_double() -> None:
    """Under 0.5 s (and overlaps) in the first bin, then 0.5-1, 1-2, 2-4 s, ...; capped."""
    gaps = np.array([-0.3, 0.0, 0.49, 0.5, 0.99, 1.0, 3.9, 4.0, 1e9])
    assert transit_bin(gaps).tolist() == [0, 0, 0, 1, 1, 2, 3, 4, TRANSIT_BINS - 1]


def test_transit_prior_credits_the_transit_its_confident_links_show() -> None:
    """Links that cross a->b in about 1.5 s: a candidate at 1.5 s is credited, at 30 s not,
    b->a not at all (a direction of its own, with no links), one camera never."""
    rng = np.random.default_rng(0)
    gaps = np.concatenate([rng.uniform(0, 60, 400), rng.uniform(1.2, 1.8, 20)])
    confident = np.r_[np.zeros(400, bool), np.ones(20, bool)]
    prior = TransitPrior(pseudo_links=10.0)
    prior.fit(["a", "b"], np.zeros(gaps.size, int), np.ones(gaps.size, int), gaps, confident)
    assert prior.bonus("a", "b", 1.5) > 0.5
    assert prior.bonus("a", "b", 30.0) == 0.0
    assert prior.bonus("b", "a", 1.5) == 0.0
    assert prior.bonus("a", "a", 1.5) == 0.0
    table = prior.table(["a", "b"])
    assert table[0, 1, transit_bin(np.array([1.5]))[0]] == prior.bonus("a", "b", 1.5)
    assert not table[1, 0].any() and not table[0, 0].any()
    probe = np.r_[np.linspace(-1.0, 100.0, 2003), 2.0 ** np.arange(-2, 16)]
    assert [prior.bonus("a", "b", g) for g in probe] == table[0, 1, transit_bin(probe)].tolist()


def test_transit_prior_gives_nothing_without_evidence() -> None:
    """No confident link (a cold site): no credit. Links whose transits look like everybody
    else's: next to none. A single link is shrunk towards no credit."""
    rng = np.random.default_rng(1)
    gaps = rng.uniform(0, 60, 500)
    AB = (["a", "b"], np.zeros(500, int), np.ones(500, int))  # every pair a -> b
    prior = TransitPrior(pseudo_links=10.0)
    prior.fit(*AB, gaps, np.zeros(500, bool))
    assert prior.bonus("a", "b", 1.0) == 0.0 and not prior.table(["a", "b"]).any()
    prior.fit(*AB, gaps, rng.random(500) < 0.1)  # links drawn at random
    credit = np.array([prior.bonus("a", "b", g) for g in gaps])
    assert credit.mean() < 0.05  # sparse bins can be lucky, a quarter sigma at most here
    assert credit.max() < 0.35
    one = np.zeros(500, bool)
    one[np.argmin(np.abs(gaps - 1.0))] = True
    prior.fit(*AB, gaps, one)
    many = np.abs(gaps - 1.0) < 0.4
    strong = TransitPrior(pseudo_links=10.0)
    strong.fit(*AB, gaps, many)
    assert 0.0 < prior.bonus("a", "b", 1.0) < strong.bonus("a", "b", 1.0)


def test_transit_evidence_links_more_where_people_cross_in_a_regular_time() -> None:
    """People walk a -> b -> c 8 s apart in noisy appearance: the transit each pair's confident
    links show is credited to the other candidates with it. Link F1 better on every seed
    (measured over ten seeds: mean 0.839 -> 0.931)."""
    gains = _gains_in_a_row(
        lambda evidence: LinkerParams(
            calibration=CalibrationParams(min_pair_samples=30, transit_evidence=evidence)
        )
    )
    assert min(gains) > 0.0, gains
    assert float(np.mean(gains)) >= 0.05, gains
