"""The controller's quality model is part of its configuration: `vks-controller serve` with a
thresholds file that is missing or invalid exits 2 at start with the file named, and never falls
back to the agents' own verdicts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import free_port

REPO = Path(__file__).resolve().parent.parent


def serve(tmp_path: Path, thresholds: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "VKS_CONTROLLER__THRESHOLDS_FILE": str(thresholds)}
    env.pop("VKS_CONTROLLER_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "controller", "serve", "--db", f"sqlite:///{tmp_path}/c.sqlite",
                           "--listen", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


@pytest.mark.parametrize("content, problem", [
    (None, "file not found"),
    ("profiles: [1, 2\n", "not valid YAML"),
    ("profiles:\n  monitor: {}\n", "no profile named 'hearing'"),
    ("profiles:\n  hearing: {}\n", "no profile named 'monitor'"),
], ids=["missing", "not-yaml", "no-hearing-profile", "no-monitor-profile"])
def test_serve_refuses_to_start_without_its_quality_model(tmp_path, content, problem):
    path = tmp_path / "thresholds.yaml"
    if content is not None:
        path.write_text(content)
    r = serve(tmp_path, path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(path) in r.stderr and problem in r.stderr
    assert "Traceback" not in r.stderr and "reports' own verdicts" not in r.stderr + r.stdout
