"""Scores for appearance vectors: same-vs-different AUC and rank-1 retrieval.

Pure numpy; vectors are L2-normalised so similarity is the dot product.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def pair_auc(vectors: np.ndarray, ids: np.ndarray) -> tuple[float, int, int]:
    """AUC of cosine similarity separating same-identity from different-identity pairs.

    Args:
        vectors: (N, D) L2-normalised.
        ids: (N,) identity of each vector.

    Returns:
        (auc, positive pairs, negative pairs) over all unordered pairs i < j.
        AUC = probability that a random same-id pair is more similar than a
        random different-id pair (ties count half; Mann-Whitney U).
    """
    sims = vectors @ vectors.T
    iu = np.triu_indices(len(ids), k=1)
    s = sims[iu]
    same = ids[iu[0]] == ids[iu[1]]
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan"), n_pos, n_neg
    ranks = rankdata(s)
    auc = (ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(auc), n_pos, n_neg


def rank1(
    vectors: np.ndarray, ids: np.ndarray, frames: np.ndarray, exclude_within: int
) -> tuple[float, int]:
    """Fraction of queries whose most similar gallery vector has the query's identity.

    Every vector is a query once; its gallery is every other vector from a
    frame more than ``exclude_within`` frames away (so a near-duplicate from the
    same moment cannot answer). Queries whose gallery holds no vector of their
    identity are skipped.

    Returns:
        (rank-1 accuracy, number of queries counted).
    """
    sims = vectors @ vectors.T
    far = np.abs(frames[:, None] - frames[None, :]) > exclude_within
    same = ids[:, None] == ids[None, :]
    answerable = (far & same).any(axis=1)
    masked = np.where(far, sims, -np.inf)
    best = masked.argmax(axis=1)
    hits = (ids[best] == ids) & answerable
    n = int(answerable.sum())
    return (float(hits.sum() / n) if n else float("nan")), n
