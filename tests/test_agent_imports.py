"""What each command holds before it does anything (issue 15: the agent's footprint, and the
controller's at 10,000 agents).

An idle `vks-agent run` - thousands of terminals, idle most of the day - imports the media stack
(aiortc and PyAV, ~35 MB) with its first session, not when it starts: agent/devices.py, which the
health check imports, opens it only when a device is probed (issue 14 had put it back at start:
55 -> 90 MB). The responder serves /metrics without the daemon's health loop, link and outbox.
The controller imports the self-check's peer (aiortc, PyAV: ~40 MB) with the first self-check.
Each case runs in a fresh interpreter: sys.modules of this one holds everything the suite imported.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.procs import PYTHON, REPO, env_with

MEDIA = ["aiortc", "av"]


def imported_after(module: str, watched: list[str]) -> list[str]:
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
            f"print(json.dumps([m for m in {watched!r} if m in sys.modules]))")
    out = subprocess.run([PYTHON, "-c", code], env=env_with(), cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize(("module", "not_yet"), [
    ("agent.cli", MEDIA + ["agent.daemon", "agent.session"]),          # every command's start
    ("agent.daemon", MEDIA + ["agent.session", "agent.media"]),        # `vks-agent run`, idle
    ("agent.health", MEDIA),                                           # the health check, no device probed
    ("agent.responder", ["agent.link", "agent.health", "agent.outbox", "agent.daemon"]),
    ("controller.app", MEDIA + ["controller.selfcheck.peer"]),          # `vks-controller serve`
])
def test_a_command_imports_only_what_it_uses(module, not_yet):
    assert imported_after(module, not_yet) == []


def test_the_guard_sees_an_import():
    # The check itself can fail: the session engine does bring the media stack.
    assert imported_after("agent.session", MEDIA) == MEDIA
