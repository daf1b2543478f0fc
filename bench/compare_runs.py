"""Checks that two runs hold the same rows in every table, read with pyarrow (an
independent reader, not our own code).

Each table is read part by part in the order its manifest lists the files, so
row order counts as well as row content. Columns that hold the run's own time or
id (`first_recommended.first_recommended_at`, `first_recommended.first_run_id`)
are left aside. Also says which part files are byte-identical.

Usage: python compare_runs.py RUN_DIR_A RUN_DIR_B
Exit 0 when every table agrees.
"""

import hashlib
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

RUN_OWN = {"first_recommended": {"first_recommended_at", "first_run_id"}}


def table(run: Path, manifest: dict, name: str) -> pa.Table:
    parts = [pq.read_table(run / f) for f in manifest["tables"][name]]
    t = pa.concat_tables(parts) if parts else pa.table({})
    drop = [c for c in t.column_names if c in RUN_OWN.get(name, set())]
    return t.drop_columns(drop)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    ma = json.loads((a / "manifest.json").read_text())
    mb = json.loads((b / "manifest.json").read_text())
    ok = True
    report = {}
    if sorted(ma["tables"]) != sorted(mb["tables"]):
        print(f"different tables: {sorted(ma['tables'])} vs {sorted(mb['tables'])}")
        return 1
    for name in sorted(ma["tables"]):
        ta, tb = table(a, ma, name), table(b, mb, name)
        same_schema = ta.schema.equals(tb.schema)
        same_rows = same_schema and ta.equals(tb)
        files_a, files_b = ma["tables"][name], mb["tables"][name]
        identical = sum(
            1
            for fa, fb in zip(files_a, files_b)
            if fa == fb and digest(a / fa) == digest(b / fb)
        )
        report[name] = {
            "rows": [ta.num_rows, tb.num_rows],
            "same_schema": same_schema,
            "same_rows_in_order": same_rows,
            "byte_identical_files": f"{identical}/{max(len(files_a), len(files_b))}",
        }
        ok &= same_rows
    for name, r in report.items():
        print(f"{name:18} rows {r['rows'][0]:>9} / {r['rows'][1]:<9} same rows in order: "
              f"{'yes' if r['same_rows_in_order'] else 'NO'}  byte-identical files: "
              f"{r['byte_identical_files']}")
    print("all tables agree" if ok else "TABLES DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
