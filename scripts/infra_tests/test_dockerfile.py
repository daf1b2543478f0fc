"""The container image, checked without Docker (which cannot build here): the
Dockerfile is parsed by the `dockerfile` package, which wraps Docker's own
parser (moby/buildkit), and its stages, user, health check and entry point are
checked; every subcommand it runs is run against the built binary with --help."""

import os
import subprocess
import unittest
from pathlib import Path

import dockerfile

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("FAVERECS_BIN", str(ROOT / "target/debug/faverecs"))


def stages(commands):
    """The instructions, split at each FROM: [(from_args, [commands])]."""
    out = []
    for c in commands:
        if c.cmd == "FROM":
            out.append((c.value, []))
        else:
            out[-1][1].append(c)
    return out


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.commands = dockerfile.parse_file(str(ROOT / "Dockerfile"))
        cls.stages = stages(cls.commands)

    def test_two_stages_build_then_a_slim_runtime(self):
        self.assertEqual(len(self.stages), 2, self.stages)
        (build_from, build), (run_from, runtime) = self.stages
        self.assertEqual(build_from[-2:], ("AS", "build"))
        self.assertTrue(build_from[0].startswith("rust:"), build_from)
        self.assertTrue(run_from[0].endswith("-slim"), run_from)
        runs = " ".join(" ".join(c.value) for c in build if c.cmd == "RUN")
        self.assertIn("cargo build --release --locked --bin faverecs", runs)
        copies = [c for c in runtime if c.cmd == "COPY"]
        self.assertTrue(any(f == "--from=build" for c in copies for f in c.flags), copies)
        # Nothing but the binary comes from the build stage.
        self.assertEqual([c.value for c in copies], [("/usr/local/bin/faverecs", "/usr/local/bin/faverecs")])

    def test_runtime_is_non_root_with_ca_certificates(self):
        runtime = self.stages[-1][1]
        users = [c.value[0] for c in runtime if c.cmd == "USER"]
        self.assertEqual(len(users), 1)
        self.assertNotIn(users[0], ("root", "0"))
        # USER comes after every RUN (which needs root for apt).
        last_run = max(i for i, c in enumerate(runtime) if c.cmd == "RUN")
        user_at = next(i for i, c in enumerate(runtime) if c.cmd == "USER")
        self.assertGreater(user_at, last_run)
        apt = " ".join(" ".join(c.value) for c in runtime if c.cmd == "RUN")
        self.assertIn("ca-certificates", apt)
        self.assertIn("--no-install-recommends", apt)

    def test_one_entry_point_for_every_stage_and_a_health_check_for_serve(self):
        runtime = self.stages[-1][1]
        entry = [c for c in runtime if c.cmd == "ENTRYPOINT"]
        self.assertEqual(len(entry), 1)
        self.assertTrue(entry[0].json, "exec form, so signals reach faverecs")
        self.assertEqual(entry[0].value, ("faverecs",))
        health = [c for c in runtime if c.cmd == "HEALTHCHECK"]
        self.assertEqual(len(health), 1)
        self.assertIn("/readyz", " ".join(health[0].value))
        cmd = [c for c in runtime if c.cmd == "CMD"]
        self.assertEqual(cmd[0].value[0], "serve")
        # No key is baked in.
        for c in self.commands:
            self.assertNotIn("FLICKR_API_KEY", " ".join(c.value) if c.cmd in ("ENV", "ARG") else "")

    def test_the_commands_it_runs_exist(self):
        runtime = self.stages[-1][1]
        health = next(c for c in runtime if c.cmd == "HEALTHCHECK")
        probe = list(health.value[health.value.index("CMD") + 1:])
        cmd = list(next(c for c in runtime if c.cmd == "CMD").value)
        for argv in (probe[1:], cmd):
            out = subprocess.run([BINARY, argv[0], "--help"], capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, (argv, out.stderr))
            for flag in [a for a in argv[1:] if a.startswith("--")]:
                self.assertIn(flag, out.stdout, (argv, flag))

    def test_dockerignore_keeps_out_data_and_build_output(self):
        lines = [
            l for l in (ROOT / ".dockerignore").read_text().splitlines() if l and not l.startswith("#")
        ]
        self.assertEqual(lines[0], "*", "everything is excluded first")
        allowed = {l for l in lines if l.startswith("!")}
        self.assertEqual(
            allowed,
            {"!Cargo.toml", "!Cargo.lock", "!config/", "!pipeline/", "!serve/", "!jobs/"},
            "only the sources the build stage copies",
        )
        self.assertIn("**/target", lines)
        # Every source the build stage copies is let in.
        build = self.stages[0][1]
        for c in build:
            if c.cmd == "COPY":
                for src in c.value[:-1]:
                    self.assertTrue(
                        f"!{src}" in allowed or f"!{src}/" in allowed, (src, allowed)
                    )


if __name__ == "__main__":
    unittest.main()
