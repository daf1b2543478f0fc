"""DuckDB baseline: the same Flexplore formula as `faverecs score`, in SQL.

Reads the raw tables that `faverecs synth` wrote, computes the top-100 photo recs
and top-50 photographer recs per tracked user with the same exclusions and tie rule
(score descending, then id ascending), and writes both as Parquet. Prints the
seconds spent and the row counts as JSON.

Usage: python flexplore_duckdb.py DATA_DIR OUT_DIR THREADS [tracked|all]
"""

import json
import os
import sys
import time

import duckdb

data, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "tracked"


def raw(t):
    """A raw table's files: one data.parquet, or hash buckets (favorites, contacts)."""
    single = os.path.join(data, "raw", t, "data.parquet")
    return single if os.path.exists(single) else os.path.join(data, "raw", t, "*", "*.parquet")


os.makedirs(out, exist_ok=True)

con = duckdb.connect()
con.execute(f"SET threads = {threads}")
t0 = time.perf_counter()
con.execute(f"""
CREATE TEMP TABLE fav AS
  SELECT DISTINCT user_id, photo_id FROM read_parquet('{raw("favorites")}');
CREATE TEMP TABLE owner AS
  SELECT photo_id, min(owner_id) AS owner_id FROM (
    SELECT photo_id, owner_id FROM read_parquet('{raw("favorites")}') WHERE owner_id IS NOT NULL
    UNION ALL
    SELECT photo_id, owner_id FROM read_parquet('{raw("photos")}')
  ) GROUP BY photo_id;
CREATE TEMP TABLE tracked AS {"SELECT DISTINCT user_id FROM fav" if mode == "all" else f"SELECT DISTINCT user_id FROM read_parquet('{raw('tracked_users')}')"};
CREATE TEMP TABLE contacts AS SELECT DISTINCT user_id, contact_id FROM read_parquet('{raw("contacts")}');

CREATE TEMP TABLE ns AS
WITH tot AS (SELECT user_id AS n, count(*) AS total FROM fav GROUP BY 1),
nb AS (
  SELECT DISTINCT f.user_id AS u, o.owner_id AS n
  FROM fav f JOIN tracked t USING (user_id) JOIN owner o USING (photo_id)
  WHERE o.owner_id <> f.user_id
),
common AS (
  SELECT nb.u, nb.n, count(*) AS common
  FROM nb
  JOIN fav fu ON fu.user_id = nb.u
  JOIN fav fn ON fn.user_id = nb.n AND fn.photo_id = fu.photo_id
  GROUP BY 1, 2
)
SELECT c.u, c.n, c.common, t.total, 150 * sqrt(c.common / (t.total + 250.0)) AS score
FROM common c JOIN tot t USING (n);

COPY (
  WITH cand AS (
    SELECT ns.u, f.photo_id, sum(ns.score) AS score
    FROM ns JOIN fav f ON f.user_id = ns.n
    GROUP BY 1, 2
  ),
  filtered AS (
    SELECT c.u, c.photo_id, o.owner_id, c.score
    FROM cand c LEFT JOIN owner o USING (photo_id)
    WHERE c.score > 0
      AND (o.owner_id IS NULL OR o.owner_id <> c.u)
      AND NOT EXISTS (SELECT 1 FROM fav f WHERE f.user_id = c.u AND f.photo_id = c.photo_id)
  ),
  ranked AS (
    SELECT u AS user_id, photo_id, owner_id, score,
           row_number() OVER (PARTITION BY u ORDER BY score DESC, photo_id) AS rank
    FROM filtered
  )
  SELECT user_id, rank, photo_id, owner_id, score FROM ranked WHERE rank <= 100
  ORDER BY user_id, rank
) TO '{out}/photo_recs.parquet' (FORMAT parquet, COMPRESSION zstd);

COPY (
  WITH ranked AS (
    SELECT u AS user_id, n AS photographer_id, score, common AS common_favorites, total AS total_favorites,
           row_number() OVER (PARTITION BY u ORDER BY score DESC, n) AS rank
    FROM ns
    WHERE score > 0 AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = ns.u AND c.contact_id = ns.n)
  )
  SELECT user_id, rank, photographer_id, score, common_favorites, total_favorites
  FROM ranked WHERE rank <= 50 ORDER BY user_id, rank
) TO '{out}/photographer_recs.parquet' (FORMAT parquet, COMPRESSION zstd);
""")
seconds = time.perf_counter() - t0
rows = {
    t: con.execute(f"SELECT count(*) FROM read_parquet('{out}/{t}.parquet')").fetchone()[0]
    for t in ("photo_recs", "photographer_recs")
}
print(json.dumps({"seconds": seconds, "rows": rows}))
