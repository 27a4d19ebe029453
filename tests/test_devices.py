"""Terminal devices, proven (issue 14 part 2; rule 14): the health check opens the configured camera
and microphone and judges what they give; a test session can send them instead of synthetic media.

The kernel here has no v4l2loopback (no /dev/video*, no modprobe) and no sound card, so the devices
are files played through the same code path (agent/devices.py's MediaPlayer): only the settings
differ from a terminal's `{file: /dev/video0, format: v4l2}` and `{file: default, format: alsa}`
(tests/device_kit.py writes them).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from agent import daemon, devices, health
from agent import session as engine
from agent.settings import AgentSettings, HealthSettings
from contract.vocab import DeviceStatus, SessionKind
from tests.device_kit import write_sound, write_video
from tests.procs import REPO, LoopTicks, agent_argv, env_with, eventually, responder, token_file, write_config

pytestmark = pytest.mark.timeout(180)

SECONDS = 6          # long enough for a probe: first frame, 0.5 s to settle, 2.5 s measured


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("devices")
    out = {k: write_video(d / f"{k}.y4m", k, SECONDS) for k in ("moving", "black", "still")}
    out.update({k: write_sound(d / f"{k}.wav", k, SECONDS) for k in ("beep", "silence")})
    # For sessions: long enough for a 4 s session and its set-up; 16-pixel blocks, which the VP8
    # encoder carries at the profile's 15 fps within its 600 kb/s.
    out["session-video"] = write_video(d / "session.y4m", "moving", 15, block=16)
    out["session-sound"] = write_sound(d / "session.wav", "beep", 15)
    return out


def device_settings(tmp_path: Path, camera: dict | None, microphone: dict | None, **health_cfg) -> AgentSettings:
    return AgentSettings.model_validate({
        "terminal_id": "court-1", "controller": {"outbox_path": str(tmp_path / "outbox.sqlite")},
        "health": {"cpu_sample_s": 0.1, **health_cfg},
        "devices": {"camera": camera, "microphone": microphone}})


def device_lines(h: dict) -> list[str]:
    return [p for p in h["problems"] if p.startswith(("camera:", "microphone:"))]


# --- the health check on each source ------------------------------------------------------------

@pytest.mark.parametrize("camera, microphone, camera_status, microphone_status, problem", [
    ("moving", "beep", "ok", "ok", None),
    ("black", "beep", "black", "ok", "camera: black picture from {camera} (its brightest frame 0 of 255 "
                                     "over 2.5 s, limit 24)"),
    ("still", "beep", "frozen", "ok", "camera: frozen picture from {camera} ("),
    ("moving", "silence", "ok", "silent", "microphone: silent ({microphone}: peak -100 dBFS over 2.5 s, "
                                          "limit -70 dBFS)"),
])
async def test_the_health_check_opens_the_devices_and_judges_them(tmp_path, files, camera, microphone,
                                                                  camera_status, microphone_status, problem):
    cam, mic = str(files[camera]), str(files[microphone])
    settings = device_settings(tmp_path, {"file": cam}, {"file": mic})
    h = await health.check_health(settings)
    json.dumps(h)
    c, m = h["camera"], h["microphone"]
    assert (c["status"], m["status"]) == (camera_status, microphone_status)
    assert c["method"] == m["method"] == "probe" and c["present"] and m["present"]
    assert (c["file"], m["file"]) == (cam, mic)
    # Frames arrive at the file's 15 fps, measured over the 2.5 s window.
    assert c["window_s"] == m["window_s"] == 2.5
    assert 30 <= c["frames"] <= 40 and (c["width"], c["height"]) == (160, 120)
    assert m["samples"] >= 2.4 * 48000
    if camera == "moving":
        assert c["luma_max"] > 100 and c["diff_max"] > 5
    elif camera == "black":
        assert c["luma_max"] == 0.0                 # limited-range black (16) is 0 in full-range luma
    else:
        assert c["diff_max"] == 0.0 and c["luma_max"] > 100
    if microphone == "beep":
        assert -20 < m["peak_dbfs"] < -10           # the -12 dBFS beep, -3 dB spread over two channels
    else:
        assert m["peak_dbfs"] == m["rms_dbfs"] == -100.0
    if problem is None:
        assert device_lines(h) == []
    else:
        [line] = device_lines(h)
        assert line.startswith(problem.format(camera=cam, microphone=mic))
        assert h["status"] == "fail"                # a black or frozen camera, a silent microphone: unhealthy
    # No FFmpeg container or reading thread is kept between checks.
    assert not any(t.name == "media-player" for t in threading.enumerate())
    assert not any(os.readlink(f"/proc/self/fd/{fd}") in (cam, mic) for fd in os.listdir("/proc/self/fd")
                   if os.path.exists(f"/proc/self/fd/{fd}"))


@pytest.mark.parametrize("camera, status, present, problem", [
    ({"file": "{tmp}/video0", "format": "v4l2"}, "missing", False,
     "camera: {tmp}/video0 not found (No such file or directory)"),
    ({"file": "{beep}"}, "error", True, "camera: cannot read {beep}: {beep} gives no video"),
    ({"file": "{tmp}/notes.txt"}, "error", True, "camera: cannot read {tmp}/notes.txt: Invalid data found"),
])
async def test_a_device_that_cannot_be_read_is_named(tmp_path, files, camera, status, present, problem):
    (tmp_path / "notes.txt").write_text("not a picture\n")
    fill = {"tmp": str(tmp_path), "beep": str(files["beep"])}
    settings = device_settings(tmp_path, {k: v.format(**fill) for k, v in camera.items()}, None)
    h = await health.check_health(settings)
    assert (h["camera"]["status"], h["camera"]["present"]) == (status, present)
    [line] = [p for p in device_lines(h) if p.startswith("camera:")]
    assert line.startswith(problem.format(**fill))
    assert h["status"] in ("warn", "fail")          # missing, unreadable: `camera_missing`, `device_error` (warn)
    assert h["microphone"]["method"] == "presence"  # not configured: the device nodes, as before


async def test_devices_are_read_at_most_every_device_interval_s_and_the_loop_keeps_running(tmp_path, files):
    settings = device_settings(tmp_path, {"file": str(files["moving"])}, {"file": str(files["beep"])},
                               device_interval_s=60)
    checker = health.HealthChecker(settings)
    async with LoopTicks() as loop:
        first = await checker.check()
    assert first["camera"]["status"] == "ok"
    assert loop.ticks >= 30             # the event loop ran on while the devices were read for seconds
    second = await checker.check()
    # Not read again: the same readings, taken at the same moment (no wall-clock bound, which a
    # loaded machine could break while the devices were rightly left alone).
    assert second["camera"] == first["camera"] and second["microphone"] == first["microphone"]
    assert second["camera"]["monotonic_s"] == first["camera"]["monotonic_s"]
    checker.settings = settings.model_copy(update={"health": settings.health.model_copy(
        update={"device_interval_s": 0})})
    third = await checker.check()
    assert third["camera"]["monotonic_s"] > first["camera"]["monotonic_s"]
    # While a session of the agent sends the devices, the check does not open them a second time.
    checker.devices_in_use = lambda: True
    fourth = await checker.check()
    assert fourth["camera"] == {**third["camera"], "in_use": True}
    fresh = await health.HealthChecker(settings, devices_in_use=lambda: True).check()
    assert fresh["camera"]["method"] == "presence" and fresh["camera"]["in_use"] is True


# --- the judgement (pure) -----------------------------------------------------------------------------

def probed(name: str, status: str, **figures) -> dict:
    return {"present": status != "missing", "status": status, "method": "probe", "file": f"/dev/{name}",
            "window_s": 2.5, "frames": 37, "gap_max_s": 0.07, **figures}


@pytest.mark.parametrize("name, reading, cfg, level, problem", [
    ("camera", probed("video0", "black", luma_max=3.2), {}, "fail",
     "camera: black picture from /dev/video0 (its brightest frame 3 of 255 over 2.5 s, limit 24)"),
    ("camera", probed("video0", "black", luma_max=3.2), {"camera_black": "warn"}, "warn",
     "camera: black picture from /dev/video0 (its brightest frame 3 of 255 over 2.5 s, limit 24)"),
    ("camera", probed("video0", "frozen", diff_max=0.0), {}, "fail",
     "camera: frozen picture from /dev/video0 (37 frames over 2.5 s, consecutive ones differing by 0.00 of "
     "255 at most, limit 0.1)"),
    ("camera", probed("video0", "frozen", frames=0, window_s=0.0, gap_max_s=None), {}, "fail",
     "camera: no picture from /dev/video0 (no frames within 5 s of opening it)"),
    ("microphone", probed("snd", "silent", frames=0), {}, "fail",
     "microphone: no sound from /dev/snd (no samples in the 2.5 s measured)"),
    ("camera", probed("video0", "frozen", diff_max=40.0, gap_max_s=1.8), {}, "fail",
     "camera: the picture from /dev/video0 stopped (nothing for 1.8 s)"),
    ("microphone", probed("snd", "silent", peak_dbfs=-88.5), {"microphone_silent": "warn"}, "warn",
     "microphone: silent (/dev/snd: peak -88.5 dBFS over 2.5 s, limit -70 dBFS)"),
    ("camera", probed("video0", "denied", error="Permission denied"), {}, "warn",
     "camera: not allowed to open /dev/video0 (Permission denied); is the agent's user in the video group?"),
    ("microphone", probed("snd", "error", error="Device or resource busy (in use by another program)"),
     {"device_error": "fail"}, "fail",
     "microphone: cannot read /dev/snd: Device or resource busy (in use by another program)"),
    ("camera", probed("video0", "missing", error="No such file or directory"), {"camera_missing": "fail"}, "fail",
     "camera: /dev/video0 not found (No such file or directory)"),
])
def test_each_device_finding_is_a_problem_in_words(name, reading, cfg, level, problem):
    from tests.test_health import GOOD
    readings = {**GOOD, name: reading}
    assert health.evaluate(readings, HealthSettings(**cfg)) == (level, [problem])
    assert health.evaluate({**GOOD, name: probed("x", "ok")}, HealthSettings(**cfg)) == ("ok", [])


def test_open_failures_by_errno():
    import errno

    def err(code):
        e = OSError(code, os.strerror(code))
        return devices.open_failure(e)
    assert err(errno.ENOENT) == (DeviceStatus.MISSING, "No such file or directory")
    assert err(errno.ENODEV)[0] == DeviceStatus.MISSING
    assert err(errno.EACCES) == (DeviceStatus.DENIED, "Permission denied")
    assert err(errno.EBUSY) == (DeviceStatus.ERROR, "Device or resource busy (in use by another program)")
    assert devices.open_failure(ValueError("no container format 'x'")) == (DeviceStatus.ERROR,
                                                                            "no container format 'x'")


def test_the_device_settings_are_checked(tmp_path):
    from agent.settings import load_settings
    from contract.configfile import ConfigError
    p = tmp_path / "agent.yaml"
    p.write_text("devices:\n  camera: {file: /dev/video0, format: v4l3}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert err.value.key == "devices.camera.format" and "no input format 'v4l3'" in str(err.value)
    p.write_text("devices:\n  camera: {file: /dev/video0, format: v4l2, options: {framerate: 30}}\n"
                 "session:\n  media: devices\n")
    s = load_settings(p)
    assert s.devices.camera.options == {"framerate": "30"} and s.session.media == "devices"
    p.write_text("health:\n  device_check_s: 1\n")      # silence is judged over 2 s or more
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert err.value.key == "health.device_check_s"


# --- the controller sees it -----------------------------------------------------------------------------

async def test_a_terminal_whose_camera_gives_black_frames_is_unhealthy(db_url, controller_app, agent_daemon,
                                                                       files):
    """Done-when of issue 14: the real agent reads a black camera; the controller's terminal shows it
    unhealthy with the reason in words, and the terminal watch opens `terminal_unhealthy` for its hearing."""
    c = await controller_app({"db": db_url, "scheduler": {"poll_s": 0.2}, "freshness": {"watch_s": 1}})
    now = dt.datetime.now(dt.UTC)
    status, h = await c.api("POST", "/api/v1/hearings", {
        "case_number": "1-14/2026", "room_id": await c.room_id(),
        "start_utc": (now + dt.timedelta(hours=3)).isoformat(),
        "participants": [{"terminal_id": "sizo-almaty-1"}]})
    assert status == 201, h
    await agent_daemon(c, "court-almaty-1", extra={"devices": {
        "camera": {"file": str(files["black"])}, "microphone": {"file": str(files["beep"])}}})

    async def unhealthy():
        t = (await c.api("GET", "/api/v1/terminals/court-almaty-1"))[1]
        return t if (t.get("health") or {}).get("status") == "fail" else None
    t = await eventually(unhealthy, 60)
    black = f"camera: black picture from {files['black']} (its brightest frame 0 of 255 over 2.5 s, limit 24)"
    assert black in t["health"]["problems"]

    async def escalated():
        items = (await c.api("GET", "/api/v1/escalations"))[1]["items"]
        return [e for e in items if e["cause"] == "terminal_unhealthy"]
    [e] = await eventually(escalated, 30)
    assert e["hearing_id"] == h["id"] and black in e["detail"]["problems"]


# --- sessions with the devices ------------------------------------------------------------------------

def test_vks_agent_test_media_devices_between_two_processes(tmp_path, files):
    config = write_config(tmp_path, (
        "session:\n  host_addresses: ['127.0.0.1']\n  media: devices\n"
        f"devices:\n  camera: {{file: '{files['session-video']}'}}\n"
        f"  microphone: {{file: '{files['session-sound']}'}}\n"))
    plain = write_config(tmp_path, "session:\n  host_addresses: ['127.0.0.1']\n"
                         f"devices:\n  camera: {{file: '{files['session-video']}'}}\n"
                         f"  microphone: {{file: '{files['session-sound']}'}}\n", name="caller.yaml")
    with responder(config) as url:              # the responder sends its devices by `session.media`
        r = subprocess.run(agent_argv("test", "--peer", url, "--duration", "4", "--json", "--media", "devices",
                                      "--token-file", str(token_file(tmp_path))),
                           env=env_with(plain), cwd=REPO, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["connected"] is True and report["verdict"] == "good", report["reasons"]
    assert report["sent"]["media"] == report["peer_sent"]["media"] == "devices"
    for direction in ("outbound", "inbound"):
        assert report[direction]["packets"] > 150 and report[direction]["lost"] == 0
    streams = {(s["kind"], s["direction"]): s for s in report["streams"]}
    assert set(streams) == {(k, d) for k in ("audio", "video") for d in ("outbound", "inbound")}
    for d in ("outbound", "inbound"):
        assert streams[("video", d)]["fps"] == pytest.approx(15, abs=2)     # the file's rate, the profile's
        assert streams[("audio", d)]["packets"] > 150


def test_media_devices_without_devices_is_a_usage_error(tmp_path):
    config = write_config(tmp_path, "session:\n  host_addresses: ['127.0.0.1']\n")
    r = subprocess.run(agent_argv("test", "--peer", "http://127.0.0.1:9", "--media", "devices"),
                       env=env_with(config), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "key 'devices.camera'" in r.stderr and "--media devices" in r.stderr


async def test_a_device_that_cannot_be_opened_fails_the_session_in_words(tmp_path):
    settings = AgentSettings.model_validate({
        "terminal_id": "court-1", "session": {"host_addresses": ["127.0.0.1"], "media": "devices"},
        "devices": {"camera": {"file": str(tmp_path / "video0"), "format": "v4l2"},
                    "microphone": {"file": str(tmp_path / "none.wav")}}})

    async def never(offer: dict) -> dict:
        raise AssertionError("no offer is made without the devices")
    report = await engine.run_caller(settings, signal=never, duration_s=2)
    assert report["connected"] is False
    assert report["error"].startswith("cannot open the terminal's devices: ")
    assert "No such file or directory" in report["error"]


def test_monitoring_during_a_hearing_never_sends_the_devices():
    assert daemon._media(SessionKind.MONITOR) == "synthetic"
    assert daemon._media(SessionKind.TEST) is None and daemon._media(SessionKind.PRECONNECT) is None


@pytest.mark.parametrize("media, running, in_use", [
    ("devices", ["s1"], True), ("devices", [], False), ("synthetic", ["s1"], False)])
def test_the_daemon_tells_the_health_check_when_its_sessions_hold_the_devices(media, running, in_use):
    import types
    stub = types.SimpleNamespace(settings=AgentSettings.model_validate({"session": {"media": media}}),
                                 running_sessions=lambda: running)
    assert daemon.Daemon._devices_in_use(stub) is in_use      # type: ignore[arg-type]


async def test_ffmpeg_sources_are_fake_devices_too(tmp_path):
    """lavfi: a trial on a machine without a camera or a sound card (README), judged alike."""
    settings = device_settings(tmp_path, {"file": "color=c=black:size=320x240:rate=15", "format": "lavfi"},
                               {"file": "sine=frequency=1000:beep_factor=4:sample_rate=48000", "format": "lavfi"})
    h = await health.check_health(settings)
    assert (h["camera"]["status"], h["microphone"]["status"]) == ("black", "ok")
    assert h["camera"]["width"] == 320 and h["microphone"]["peak_dbfs"] > -20
