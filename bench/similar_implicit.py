"""Baseline for bench/similar_vs_implicit.sh: implicit's CosineRecommender on the same
favourites, then a comparison with faverecs' similar_photos table.

    python similar_implicit.py FAVORITES_PARQUET OUR_SIMILAR_DIR K REPEATS THREADS

Builds the user x photo matrix (binary; photos indexed in sorted id order, as
faverecs does), times `fit` (normalisation plus all top-K rows) REPEATS times, and
compares each photo's top K with ours. implicit's rows include the photo itself,
so it is asked for K + 1 and the photo is dropped. Prints one JSON line.
"""

import json
import statistics
import sys
import time

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp
from implicit.nearest_neighbours import CosineRecommender

fav_path, ours_dir, k, repeats, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

fav = pq.read_table(fav_path, columns=["user_id", "photo_id"])
users = pc.unique(fav["user_id"]).sort()
photos = pc.unique(fav["photo_id"]).sort()
u = pc.index_in(fav["user_id"], users).to_numpy()
p = pc.index_in(fav["photo_id"], photos).to_numpy()
user_items = sp.csr_matrix((np.ones(len(u), dtype=np.float64), (u, p)), shape=(len(users), len(photos)))
user_items.sum_duplicates()
user_items.data[:] = 1.0

times = []
for _ in range(repeats):
    model = CosineRecommender(K=k + 1, num_threads=threads)
    t = time.perf_counter()
    model.fit(user_items, show_progress=False)
    times.append(time.perf_counter() - t)
sim = model.similarity.tocsr()

# Ours: photo -> [(similar, score)], rank order.
ours = pq.read_table(ours_dir, columns=["photo_id", "rank", "similar_photo_id", "score"]).to_pydict()
mine = {}
for a, b, s in zip(ours["photo_id"], ours["similar_photo_id"], ours["score"]):
    mine.setdefault(a, []).append((b, s))

photo_ids = photos.to_pylist()
same = same_up_to_ties = compared = 0
max_diff = 0.0
for i, pid in enumerate(photo_ids):
    row = sim.getrow(i)
    theirs = sorted(((photo_ids[j], v) for j, v in zip(row.indices, row.data) if j != i and v > 0),
                    key=lambda x: (-x[1], x[0]))[:k]
    mine_i = mine.get(pid, [])
    compared += 1
    if {x for x, _ in theirs} == {x for x, _ in mine_i}:
        same += 1
        same_up_to_ties += 1
        by_id = dict(theirs)
        for x, s in mine_i:
            max_diff = max(max_diff, abs(by_id[x] - s))
    elif len(theirs) == len(mine_i) and all(abs(a[1] - b[1]) < 1e-6 for a, b in zip(theirs, mine_i)):
        # Different photos, but the same ranked scores: they differ only among ties.
        same_up_to_ties += 1

print(json.dumps({
    "favorites": int(user_items.nnz),
    "users": len(users),
    "photos": len(photos),
    "fit_seconds": times,
    "fit_median": statistics.median(times),
    "photos_compared": compared,
    "identical_topk_share": same / compared,
    "identical_up_to_ties_share": same_up_to_ties / compared,
    "max_score_diff_on_identical": max_diff,
}))
