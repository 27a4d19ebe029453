"""The controller's quality model is part of its configuration: `vks-controller serve` with a
thresholds file that is missing or invalid exits 2 at start with the file named, and never falls
back to the agents' own verdicts."""
from __future__ import annotations

import datetime as dt
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



@pytest.mark.parametrize("profile, verdict", [("monitor", "good"), ("hearing", "degraded")])
async def test_a_check_and_a_test_are_judged_by_the_profile_they_ran_with(tmp_path, profile, verdict):
    """1.5 % loss is within the 'monitor' profile (2 %) and degraded for a 'hearing' (1 %): a check
    and an on-demand test are held to the thresholds of the media profile the controller asked the
    agents to run - as the agents held their own report - not to the default profile (a 'monitor'
    test judged 'degraded' by the controller while its agent counted 'good' was seen in CI)."""
    from contract import quality
    from controller.checks import quality_judge
    from controller.store import agents as agents_repo
    from tests.conftest import FakeClock
    from tests.controller_kit import Controller, report

    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    profiles = quality.load_thresholds()
    lossy = report("good", loss=0.015)
    async with Controller(f"sqlite:///{tmp_path / 'c.sqlite'}", clock,
                          judge=quality_judge(profiles, quality.select(profiles)),
                          checks={"test_profile": profile}) as c:
        _, h = await c.schedule(start=clock() + dt.timedelta(hours=3), case="2-301/2026")
        await c.scheduler.run_until_idle()
        started = c.gw.started[-1]
        assert started["profile"] == profile
        await c.checks.on_session_result(started["session_id"], lossy)
        _, got = await c.call("GET", f"/api/v1/hearings/{h['id']}", expect=200)
        assert got["test_request"]["items"][0]["verdict"] == verdict

        _, test = await c.call("POST", "/api/v1/tests", expect=202,
                               json={"caller": "court-almaty-2", "callee": "sizo-almaty-2", "duration_s": 5})
        assert c.gw.started[-1]["profile"] == profile
        async with c.db.transaction() as conn:
            await agents_repo.store_reports(conn, [agents_repo.NewReport(
                "court-almaty-2", "r-caller", "session", test["id"], {"role": "caller", "report": lossy}, None)])
        _, got = await c.call("GET", f"/api/v1/tests/{test['id']}", expect=200)
        assert got["verdict"] == verdict
