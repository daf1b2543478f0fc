"""How many favourites each users shard reads, under faverecs' assignment of
targets to shards and under two others (issue 14, acceptance 2). A probe, not
a test: it reads the raw tables with DuckDB and runs nothing of faverecs.

    shard_reads.py DATA N

DATA is a storage folder (`raw/favorites/bucket=*/…`, `raw/tracked_users/…`,
`raw/photos/…`). A users shard that needs only its targets' neighbourhood
(no itemknn, no popular, no fallbacks) reads the favourites of its targets and
of their neighbours, the owners of the photos its targets favourited. For
each assignment this prints every shard's favourites read, and the largest as
a fraction of what one unsharded run reads (every target's neighbourhood):

- `nsid-hash`: faverecs today, FNV-1a-64 of the NSID mod N (`pipeline::shard`);
- `greedy`: targets in descending order of their neighbourhood's weight (NSID
  ascending on ties), each to the shard whose read it grows least (load plus
  growth, then the lower shard), a neighbour weighing 1 plus the number of
  targets that favourited its photos: only what the targets' own favourites
  tell, so every shard could compute it from them;
- `greedy-exact`: the same, weighing each user by their favourites, which a
  shard does not know before it reads them;
- `theme-oracle`: the synthetic community's taste clusters (the first tag of
  a photo is its owner's cluster's theme; a target's is the commonest theme
  of its favourites), whole clusters to shards, heaviest first to the
  lightest shard. Only the generator's data has it: a bound on what knowing
  the clusters gives, not an assignment faverecs could make.
"""

import collections
import sys

import duckdb

FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def fnv1a64(text: str) -> int:
    h = FNV_OFFSET
    for b in text.encode():
        h = ((h ^ b) * FNV_PRIME) % (1 << 64)
    return h


def main() -> int:
    data, n = sys.argv[1], int(sys.argv[2])
    con = duckdb.connect()
    favorites = f"read_parquet('{data}/raw/favorites/**/*.parquet')"
    photos = f"read_parquet('{data}/raw/photos/**/*.parquet')"
    tracked = f"read_parquet('{data}/raw/tracked_users/**/*.parquet')"
    targets = [r[0] for r in con.execute(f"SELECT DISTINCT user_id FROM {tracked} ORDER BY 1").fetchall()]
    con.execute(f"CREATE TABLE t AS SELECT DISTINCT user_id AS u FROM {tracked}")
    neighbours = collections.defaultdict(set)
    rows = con.execute(
        f"SELECT DISTINCT f.user_id, f.owner_id FROM {favorites} f JOIN t ON f.user_id = t.u "
        "WHERE f.owner_id IS NOT NULL"
    ).fetchall()
    for user, owner in rows:
        neighbours[user].add(owner)
    favs = dict(con.execute(f"SELECT user_id, count(*) FROM {favorites} GROUP BY 1").fetchall())

    def reach(t):
        return neighbours.get(t, set()) | {t}

    whole = sum(favs.get(u, 0) for u in set().union(*(reach(t) for t in targets)))
    print(f"{len(targets)} targets; an unsharded run reads {whole} favourites; N = {n}")

    def report(name, assign):
        read = [set() for _ in range(n)]
        for t, s in assign.items():
            read[s] |= reach(t)
        rows = [sum(favs.get(u, 0) for u in r) for r in read]
        sizes = collections.Counter(assign.values())
        print(
            f"{name:>13}: largest shard reads {max(rows) / whole:.1%} "
            f"(all shards {sum(rows) / whole:.2f}x); favourites {rows}; "
            f"targets {[sizes[s] for s in range(n)]}"
        )

    def greedy(weight):
        order = sorted(targets, key=lambda t: (-sum(weight(u) for u in reach(t)), t))
        union, load, assign = [set() for _ in range(n)], [0] * n, {}
        for t in order:
            grows = [sum(weight(u) for u in reach(t) - union[s]) for s in range(n)]
            s = min(range(n), key=lambda s: (load[s] + grows[s], s))
            assign[t], load[s] = s, load[s] + grows[s]
            union[s] |= reach(t)
        return assign

    report("nsid-hash", {t: fnv1a64(t) % n for t in targets})
    named = collections.Counter(u for t in targets for u in neighbours.get(t, ()))
    report("greedy", greedy(lambda u: 1 + named[u]))
    report("greedy-exact", greedy(lambda u: favs.get(u, 0)))

    theme = dict(
        con.execute(
            f"SELECT f.user_id, mode(split_part(p.tags, ' ', 1)) FROM {favorites} f "
            f"JOIN t ON f.user_id = t.u JOIN {photos} p USING (photo_id) GROUP BY 1"
        ).fetchall()
    )
    clusters = collections.defaultdict(set)
    for t in targets:
        clusters[theme.get(t)] |= reach(t)
    weight = {c: sum(favs.get(u, 0) for u in r) for c, r in clusters.items()}
    load, shard_of = [0] * n, {}
    for c in sorted(weight, key=lambda c: (-weight[c], str(c))):
        s = min(range(n), key=lambda s: (load[s], s))
        shard_of[c], load[s] = s, load[s] + weight[c]
    report("theme-oracle", {t: shard_of[theme.get(t)] for t in targets})
    return 0


if __name__ == "__main__":
    sys.exit(main())
