"""Compares two runs' tables as multisets of rows, in any order, with DuckDB
(not faverecs' own reader): a sharded run against an unsharded one, whose
files and row order differ. (`compare_runs.py` compares in order, file by file.)

    compare_rows.py DATA RUN_A RUN_B

For every table folder of RUN_A (`shards/` and the serving layout's `serving/`
aside), the rows of A and B must be
equal as multisets (EXCEPT ALL both ways, and equal counts), leaving out the
columns that hold a run's own time or id (`first_recommended_at`,
`first_run_id`). Prints one line per table, then EQUAL or DIFFERENT; exits 1
when different.
"""

import os
import sys

import duckdb

SKIP = {"first_recommended": {"first_recommended_at", "first_run_id"}}


def main() -> int:
    root, a, b = sys.argv[1:4]
    con = duckdb.connect()
    bad = 0
    tables = sorted(
        t
        for t in os.listdir(f"{root}/runs/{a}")
        if os.path.isdir(f"{root}/runs/{a}/{t}") and t not in ("shards", "serving")
    )
    if not tables:
        print(f"run {a} has no tables")
        return 1
    for t in tables:
        src_a = f"'{root}/runs/{a}/{t}/*.parquet'"
        src_b = f"'{root}/runs/{b}/{t}/*.parquet'"
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src_a}").fetchall()]
        keep = ", ".join(f'"{c}"' for c in cols if c not in SKIP.get(t, set()))
        qa, qb = f"SELECT {keep} FROM {src_a}", f"SELECT {keep} FROM {src_b}"
        count = lambda q: con.execute(f"SELECT count(*) FROM ({q})").fetchone()[0]
        n, m = count(qa), count(qb)
        only_a, only_b = count(f"{qa} EXCEPT ALL {qb}"), count(f"{qb} EXCEPT ALL {qa}")
        print(f"{t}: {n} vs {m} rows, {only_a} only in {a}, {only_b} only in {b}")
        bad += only_a + only_b + abs(n - m)
    print("EQUAL" if bad == 0 else "DIFFERENT")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
