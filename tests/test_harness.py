"""The suite's own rules (tests/harness.py, tests/conftest.py): under CI a missing system part is a
failure, not a skip, and scripts/system-packages.sh refuses to leave packages out; Hypothesis
draws the same examples on every CI run, and no test overrides that."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings

from tests.harness import have, in_ci, require_or_skip
from tests.procs import REPO

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("value", ["true", "1"])
def test_a_missing_system_part_fails_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="chromium missing.*under CI"):
        require_or_skip("chromium missing")
    with pytest.raises(pytest.fail.Exception, match="vks-no-such-tool"):
        have("vks-no-such-tool")
    require_or_skip(None)                      # present: nothing happens
    assert have("sh")


@pytest.mark.parametrize("value", [None, "", "false"])
def test_a_missing_system_part_skips_elsewhere(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match="chromium missing"):
        require_or_skip("chromium missing")
    assert have("vks-no-such-tool") is False


@pytest.mark.parametrize(("ci", "code"), [("", 0), ("true", 1)])
def test_system_packages_script_refuses_missing_packages_under_ci(tmp_path, ci, code):
    """Not root and nothing installed (a PATH with only `id`, saying uid 1000, and `ls`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "id").chmod(0o755)
    (bin_dir / "ls").symlink_to("/bin/ls")
    out = subprocess.run(["/bin/bash", str(REPO / "scripts" / "system-packages.sh")], capture_output=True,
                         text=True, timeout=60, env={"PATH": str(bin_dir), "CI": ci})
    assert out.returncode == code, out.stderr
    assert "missing Debian packages:" in out.stderr and "chromium" in out.stderr
    assert ("CI=true" in out.stderr) is (code == 1)


def test_ci_profile_draws_the_same_examples_every_run():
    ci = settings.get_profile("ci")
    assert ci.derandomize is True and ci.database is None and ci.deadline is None
    assert settings.get_profile("dev").derandomize is False
    if in_ci():
        assert settings.default.derandomize is True


def test_no_test_overrides_the_profiles_derandomize():
    """A test's own @settings(derandomize=...) would make it random under CI or fixed elsewhere."""
    mine = ("conftest.py", "test_harness.py")
    found = [f"{path.name}:{n}" for path in sorted(TESTS.glob("*.py")) if path.name not in mine
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"\bderandomize\s*=", line)]
    assert found == []
