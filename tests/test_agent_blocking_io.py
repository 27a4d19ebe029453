"""Files the agent reads while its event loop runs are read in a worker thread (issue 10): the
token file at every connect, the CA file, the quality model's YAML (the live metrics' and each
session report's). A read on the event loop stalls every session and the link while the disk
answers.

Deterministic, not timing-based: the file read itself is wrapped to record whether an event loop
is running in the thread that reads (in a worker thread of `asyncio.to_thread` there is none).
"""
from __future__ import annotations

import asyncio
import ssl

import pytest

from agent import link as agent_link
from agent import session as engine
from agent.link import Link
from agent.metrics import for_settings
from agent.outbox import Outbox
from agent.settings import AgentSettings
from contract import configfile
from tests.procs import eventually


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Recorder:
    """Wraps a blocking function; `calls` says, per call, whether it ran on an event loop."""

    def __init__(self, fn):
        self.fn = fn
        self.calls: list[bool] = []

    def __call__(self, *args, **kwargs):
        self.calls.append(on_event_loop())
        return self.fn(*args, **kwargs)


class NoHandler:
    async def on_command(self, command):
        pass

    async def on_signal(self, message):
        pass

    def running_sessions(self):
        return []


@pytest.fixture
def yaml_reads(monkeypatch):
    rec = Recorder(configfile.read_yaml)
    monkeypatch.setattr(configfile, "read_yaml", rec)
    return rec


def test_the_recorder_tells_the_loop_from_a_thread():
    async def main():
        here = on_event_loop()
        there = await asyncio.to_thread(on_event_loop)
        return here, there
    assert asyncio.run(main()) == (True, False)


async def test_the_token_file_is_read_off_the_event_loop(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("secret-token\n", encoding="utf-8")
    opened = Recorder(configfile.read_secret)
    monkeypatch.setattr(configfile, "read_secret", opened)          # what read_token reads the file with
    settings = AgentSettings.model_validate({
        "terminal_id": "court-1",
        "controller": {"url": "ws://127.0.0.1:1", "token_file": str(token_file),
                       "outbox_path": str(tmp_path / "outbox.sqlite")}})
    async with Outbox(settings.controller.outbox_path) as outbox:
        link = Link(settings, outbox, NoHandler(), backoff_initial=0.01, backoff_max=0.05)
        task = asyncio.create_task(link.run())
        try:
            await eventually(lambda: len(opened.calls) >= 2, timeout=10)   # a reconnect re-reads it
        finally:
            await link.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert opened.calls and not any(opened.calls)


async def test_the_ca_file_is_read_off_the_event_loop(tmp_path, monkeypatch):
    made = Recorder(ssl.create_default_context)
    monkeypatch.setattr(agent_link.ssl, "create_default_context", made)
    settings = AgentSettings.model_validate({
        "terminal_id": "court-1",
        "controller": {"url": "wss://127.0.0.1:1", "token": "t", "outbox_path": str(tmp_path / "o.sqlite")}})
    link = Link(settings, Outbox(settings.controller.outbox_path), NoHandler())
    assert isinstance(await link.open(), ssl.SSLContext)
    assert made.calls == [False]


async def test_the_metrics_read_the_quality_model_off_the_event_loop(yaml_reads):
    metrics = for_settings(AgentSettings(terminal_id="court-1"))
    await metrics.load_thresholds()
    assert yaml_reads.calls == [False]
    metrics.session("test", "caller", "sizo-1").end("cancelled")      # judged with what was loaded
    assert yaml_reads.calls == [False]


async def loopback_session(settings: AgentSettings, duration_s: float = 1.0) -> tuple[dict, dict]:
    """(the caller's report, the callee's receive side) of one session between two sides in this process."""
    served: list[asyncio.Task] = []

    async def signal(offer: dict) -> dict:
        answer, callee = await engine.answer_offer(settings, offer)
        served.append(asyncio.create_task(callee.serve()))
        return answer

    report = await engine.run_caller(settings, signal=signal, duration_s=duration_s)
    return report, await asyncio.wait_for(served[0], 30)


async def test_a_session_builds_its_report_off_the_event_loop(yaml_reads):
    settings = AgentSettings.model_validate({"terminal_id": "court-1",
                                             "session": {"host_addresses": ["127.0.0.1"]}})
    report, received = await loopback_session(settings)
    assert report["connected"] is True and report["inbound"]["packets"] > 0
    assert received["packets"] > 0
    assert yaml_reads.calls and not any(yaml_reads.calls)


async def test_a_report_of_a_failed_session_is_built_off_the_event_loop(yaml_reads):
    async def refuse(offer: dict) -> dict:
        raise engine.SignalingError("the peer refused")

    report = await engine.run_caller(AgentSettings(terminal_id="court-1"), signal=refuse, duration_s=1.0)
    assert report["connected"] is False and report["error"] == "the peer refused"
    # The quality model, and the reasons' catalog when this process has not read it yet: each off the loop.
    assert yaml_reads.calls and not any(yaml_reads.calls)


async def test_the_devices_are_opened_off_the_event_loop(tmp_path, monkeypatch):
    """FFmpeg opening a camera or a microphone (issue 14) blocks: the health check's probe and a
    session sending the devices both open them in a worker thread."""
    from agent import devices, health
    from tests.device_kit import write_sound, write_video
    opened = Recorder(devices.open_player)
    monkeypatch.setattr(devices, "open_player", opened)
    settings = AgentSettings.model_validate({
        "terminal_id": "court-1", "session": {"host_addresses": ["127.0.0.1"], "media": "devices"},
        "controller": {"outbox_path": str(tmp_path / "outbox.sqlite")}, "health": {"cpu_sample_s": 0.1},
        "devices": {"camera": {"file": str(write_video(tmp_path / "v.y4m", "moving", 8, block=16))},
                    "microphone": {"file": str(write_sound(tmp_path / "a.wav", "beep", 8))}}})
    h = await health.check_health(settings)
    assert h["camera"]["status"] == h["microphone"]["status"] == "ok"
    report, _ = await loopback_session(settings)
    assert report["connected"] is True and report["sent"]["media"] == "devices"
    assert len(opened.calls) == 6 and not any(opened.calls)    # 2 by the check, 2 by each side
