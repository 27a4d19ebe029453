"""`make run` (controller/demo.py): the whole system on one machine does what the README says."""
import os
import re
import subprocess
import sys

from tests.procs import REPO, free_port


def test_demo_runs_the_test_session_and_the_preconnect_check(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO),
               # Short sessions, so the demo shows both checks within the test's time.
               VKS_CONTROLLER__CHECKS__TEST_DURATION_S="4",
               VKS_CONTROLLER__CHECKS__PRECONNECT_DURATION_S="4")
    r = subprocess.run([sys.executable, "-m", "controller.demo", "--port", str(free_port()),
                        "--dir", str(tmp_path / "demo"), "--minutes-ahead", "30.25", "--for-seconds", "90",
                        "--until-checked"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"web page:\s+http://127\.0\.0\.1:\d+/", r.stdout)
    assert re.search(r"test_request: passed good", r.stdout), r.stdout
    assert re.search(r"preconnect: passed good", r.stdout), r.stdout
    assert "Traceback" not in (tmp_path / "demo" / "demo.log").read_text()
