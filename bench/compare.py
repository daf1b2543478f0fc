"""Checks that faverecs and the DuckDB baseline agree.

Compares the (user_id, photo_id) sets of each user's top list and the scores of the
common rows. Float sums in a different order can reorder exact near-ties, so the
check is on sets and on scores within 1e-9, not on row order.

Usage: python compare.py FAVERECS_RUN_DIR DUCKDB_OUT_DIR
"""

import json
import sys

import duckdb

run, base = sys.argv[1], sys.argv[2]
con = duckdb.connect()
result = {}
for table, item in (("photo_recs", "photo_id"), ("photographer_recs", "photographer_id")):
    ours = f"read_parquet('{run}/{table}/*.parquet')"
    theirs = f"read_parquet('{base}/{table}.parquet')"
    n_ours, n_theirs, common, max_diff = con.execute(f"""
      SELECT (SELECT count(*) FROM {ours}), (SELECT count(*) FROM {theirs}),
             count(*), coalesce(max(abs(a.score - b.score)), 0)
      FROM {ours} a JOIN {theirs} b USING (user_id, {item})
    """).fetchone()
    # Rows only one side has must be exact ties at that user's cut-off score: the
    # two engines sum floats in different orders, which can swap equal scores.
    not_ties = con.execute(f"""
      WITH d AS (SELECT a.* FROM {ours} a ANTI JOIN {theirs} b USING (user_id, {item})),
           m AS (SELECT user_id, min(score) AS cut FROM {theirs} GROUP BY 1)
      SELECT count(*) FROM d JOIN m USING (user_id) WHERE abs(d.score - m.cut) > 1e-9
    """).fetchone()[0]
    result[table] = {"faverecs_rows": n_ours, "duckdb_rows": n_theirs, "same_rows": common,
                     "share_identical": round(common / max(n_ours, 1), 6),
                     "max_score_diff": max_diff, "differences_not_at_a_tie": not_ties}
print(json.dumps(result))
ok = all(r["faverecs_rows"] == r["duckdb_rows"] and r["differences_not_at_a_tie"] == 0
         and r["max_score_diff"] < 1e-9 for r in result.values())
sys.exit(0 if ok else 1)
