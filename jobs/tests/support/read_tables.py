"""Reads every faverecs table with independent readers (pyarrow and DuckDB) and
checks the documented column types (docs/data-model.md) and the row counts the run
manifest records. Prints a summary; exits 1 on the first mismatch.

Usage: python read_tables.py DATA_DIR
"""

import json
import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

TS = pa.timestamp("us", tz="UTC")
S = pa.string()
EXPECTED = {
    "favorites": {"user_id": S, "photo_id": S, "owner_id": S, "date_faved": TS},
    "photos": {"photo_id": S, "owner_id": S, "owner_name": S, "title": S, "server": S,
               "secret": S, "tags": S, "date_upload": TS},
    "contacts": {"user_id": S, "contact_id": S},
    "tracked_users": {"user_id": S, "username": S, "added_at": TS},
    "extract_state": {"user_id": S, "last_pulled_at": TS, "last_full_pull_at": TS,
                      "newest_date_faved": TS, "outcome": S, "next_attempt_at": TS,
                      "favorites_total": pa.int64(), "refresh_hours": pa.float64()},
    "photo_recs": {"user_id": S, "rank": pa.int32(), "photo_id": S, "owner_id": S,
                   "score": pa.float64(), "neighbor_count": pa.int32(),
                   "top_neighbors": pa.list_(pa.field("item", S, nullable=False)),
                   "similar_to": pa.list_(pa.field("item", S, nullable=False)),
                   "algorithm": S, "fallback": pa.bool_()},
    "photographer_recs": {"user_id": S, "rank": pa.int32(), "photographer_id": S,
                          "score": pa.float64(), "common_favorites": pa.int64(),
                          "total_favorites": pa.int64()},
    "first_recommended": {"user_id": S, "photo_id": S, "first_recommended_at": TS, "first_run_id": S},
    "similar_photos": {"photo_id": S, "rank": pa.int32(), "similar_photo_id": S, "score": pa.float64(),
                       "common_favorites": pa.int64(), "algorithm": S},
    "tag_photos": {"tag": S, "rank": pa.int32(), "photo_id": S, "favorites": pa.int64()},
    "metrics": {"algorithm": S, "k": pa.int32(), "users_evaluated": pa.int64(),
                "precision": pa.float64(), "recall": pa.float64(), "ndcg": pa.float64(),
                "map": pa.float64(), "hit_rate": pa.float64(), "coverage": pa.float64(),
                "split": S},
}

data = sys.argv[1]
run_id = json.load(open(os.path.join(data, "CURRENT")))["run_id"]
manifest = json.load(open(os.path.join(data, "runs", run_id, "manifest.json")))
con = duckdb.connect()
checked = {}


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


# The raw tables stored in hash buckets by user (raw/<t>/bucket=NNNN/): read as
# a Hive dataset they gain the partition column `bucket`.
BUCKETED = {"favorites", "contacts", "dismissals"}


def check(name, folder, want_rows):
    table = pq.read_table(folder)
    want = dict(EXPECTED[name])
    if name in BUCKETED and want_rows is None:
        want["bucket"] = pa.dictionary(pa.int32(), pa.int32())
    got = {f.name: f.type for f in table.schema}
    if got != want:
        fail(f"{name}: pyarrow schema {got} != documented {want}")
    files = f"{folder}/**/*.parquet"
    count = con.execute(f"SELECT count(*) FROM read_parquet('{files}')").fetchone()[0]
    if count != table.num_rows:
        fail(f"{name}: duckdb counts {count} rows, pyarrow {table.num_rows}")
    if want_rows is not None and count != want_rows:
        fail(f"{name}: {count} rows, the manifest says {want_rows}")
    for col, typ in want.items():
        if typ == TS:
            kind = con.execute(f"SELECT typeof({col}) FROM read_parquet('{files}') LIMIT 1").fetchone()
            if kind is not None and kind[0] != "TIMESTAMP WITH TIME ZONE":
                fail(f"{name}.{col}: duckdb reads {kind[0]}")
    checked[name if want_rows is None else f"run/{name}"] = count


for raw in ["favorites", "photos", "contacts", "tracked_users", "extract_state"]:
    if raw in BUCKETED and not os.path.exists(os.path.join(data, "raw", raw, "_layout.json")):
        fail(f"{raw} is not stored in buckets")
    folder = os.path.join(data, "raw", raw)
    if os.path.isdir(folder):
        check(raw, folder, None)
for table, rows in manifest["rows_out"].items():
    check(table, os.path.join(data, "runs", run_id, table), rows)

# One analyst query: a join of photo_recs and photos.
top = con.execute(f"""
    SELECT r.user_id, r.rank, p.title
    FROM read_parquet('{data}/runs/{run_id}/photo_recs/*.parquet') r
    JOIN read_parquet('{data}/runs/{run_id}/photos/*.parquet') p USING (photo_id)
    WHERE r.rank = 1 ORDER BY r.user_id LIMIT 3
""").fetchall()
if not top:
    fail("the photo_recs ⋈ photos join returned nothing")
print(json.dumps({"run_id": run_id, "rows": checked, "sample_join": top}))
