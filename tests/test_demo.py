"""`make run` (controller/demo.py): the whole system on one machine does what the README says."""
import os
import re
import sqlite3
import subprocess
import sys

from controller.store.users import verify_password
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
    # The page's sign-in asks for a user name and password: the demo prints them, each saying who it is.
    logins = dict(re.findall(r"user (demo-\S+)\s+password (\S+)", r.stdout))
    assert set(logins) == {"demo-secretary", "demo-admin"}, r.stdout
    assert re.search(r"secretary:\s+user demo-secretary", r.stdout) and re.search(r"admin:\s+user demo-admin", r.stdout)
    stored = sqlite3.connect(tmp_path / "demo" / "controller.sqlite").execute(
        "SELECT u.name, p.scrypt, u.role FROM users u JOIN user_passwords p ON p.user_id = u.id").fetchall()
    assert {name: role for name, _, role in stored} == {"demo-secretary": "secretary", "demo-admin": "admin"}
    assert all(verify_password(logins[name], hashed) for name, hashed, _ in stored)
    assert re.search(r"test_request: passed good", r.stdout), r.stdout
    assert re.search(r"preconnect: passed good", r.stdout), r.stdout
    assert "Traceback" not in (tmp_path / "demo" / "demo.log").read_text()
