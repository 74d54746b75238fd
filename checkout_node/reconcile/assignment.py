"""Minimum-cost assignment (the Hungarian method) with "leave it unmatched" as an option.

Reconciliation pairs counted items with scan units. Some items have no scan (skip-scan) and some
scans no item, so the square problem is padded the usual way: every item and every scan unit may
stay unmatched at a fixed price, and a pair is made only when it is cheaper than leaving both
alone. Written out (vectorised numpy, O(n^3)) so the lane needs no scipy.
"""

from __future__ import annotations

import numpy as np

FORBIDDEN = 1e9


def hungarian(cost: np.ndarray) -> np.ndarray:
    """For a square cost matrix, the column assigned to each row minimising the total."""
    n = cost.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    # Shortest augmenting paths with potentials (Kuhn-Munkres as in Jonker-Volgenant); index 0
    # is a virtual column, rows and columns are 1-based inside.
    u = np.zeros(n + 1)
    v = np.zeros(n + 1)
    row_of = np.zeros(n + 1, np.int64)  # row_of[j]: the row matched to column j
    way = np.zeros(n + 1, np.int64)
    for i in range(1, n + 1):
        row_of[0] = i
        j0 = 0
        minv = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, bool)
        while True:
            used[j0] = True
            i0 = row_of[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            used_idx = np.flatnonzero(used)
            u[row_of[used_idx]] += delta
            v[used_idx] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if row_of[j0] == 0:
                break
        while j0:  # flip the augmenting path
            j1 = way[j0]
            row_of[j0] = row_of[j1]
            j0 = j1
    assignment = np.zeros(n, np.int64)
    assignment[row_of[1:] - 1] = np.arange(n)
    return assignment


def match_with_unmatched(cost: np.ndarray, unmatched: float) -> list[tuple[int, int]]:
    """Pairs (row, col) of a rectangular cost matrix minimising the total, where leaving a row
    or a column unmatched costs ``unmatched`` each and entries >= FORBIDDEN are never paired."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return []
    size = n + m
    padded = np.full((size, size), FORBIDDEN)
    padded[:n, :m] = np.minimum(cost, FORBIDDEN)
    padded[np.arange(n), m + np.arange(n)] = unmatched  # row i stays alone
    padded[n + np.arange(m), np.arange(m)] = unmatched  # column j stays alone
    padded[n:, m:] = 0.0  # the dummies pair among themselves for free
    assignment = hungarian(padded)
    return [(i, int(j)) for i, j in enumerate(assignment[:n]) if j < m and cost[i, j] < FORBIDDEN]
