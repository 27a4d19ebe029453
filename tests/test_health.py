"""Terminal health (rule 14): real readings of this machine, and the judgement of injected ones."""
from __future__ import annotations

import copy
import functools
import json
import socket

import pytest

from agent import health
from agent.settings import AgentSettings, HealthSettings, load_settings
from contract.configfile import ConfigError
from tests.procs import LoopTicks


@pytest.fixture
def settings(tmp_path) -> AgentSettings:
    return AgentSettings.model_validate({
        "terminal_id": "court-1-room-2",
        # The outbox's directory does not exist yet: its nearest existing ancestor is checked.
        "controller": {"outbox_path": str(tmp_path / "state" / "outbox.sqlite")},
        "health": {"cpu_sample_s": 0.1},
    })


# --- real readings --------------------------------------------------------------

async def test_check_health_reads_this_machine(settings):
    h = await health.check_health(settings)
    json.dumps(h)                                       # JSON-able as is
    assert h["schema"] == "vks.health/1"
    assert h["terminal_id"] == "court-1-room-2"
    assert h["status"] in ("ok", "warn", "fail")
    assert isinstance(h["problems"], list)
    assert (h["status"] == "ok") == (h["problems"] == [])

    assert 0 <= h["cpu"]["percent"] <= 100
    assert h["cpu"]["count"] >= 1 and len(h["cpu"]["load"]) == 3

    mem = h["memory"]
    assert 0 < mem["used_bytes"] < mem["total_bytes"]
    assert 0 < mem["used_ratio"] < 1

    purposes = {p for d in h["disk"] for p in d["purposes"]}
    assert {"root", "outbox"} <= purposes
    root = next(d for d in h["disk"] if "root" in d["purposes"])
    assert root["mount"] == "/"
    assert 0 < root["free_bytes"] <= root["total_bytes"]
    assert 0 <= root["used_ratio"] <= 1

    lo = h["network"]["interfaces"]["lo"]
    assert lo["up"] is True and lo["loopback"] is True
    assert "127.0.0.1" in lo["addresses"]
    assert lo["delta"] is None                          # first check: nothing to compare with
    assert h["network"]["interval_s"] is None

    assert isinstance(h["camera"]["present"], bool)
    assert isinstance(h["microphone"]["present"], bool)
    clock = h["clock"]
    assert clock["offset_s"] is not None or clock["reason"]
    assert h["agent"]["rss_bytes"] > 10 * 1024 ** 2


@pytest.mark.parametrize("camera", [True, False], ids=["camera", "no-camera"])
@pytest.mark.parametrize("microphone", [True, False], ids=["microphone", "no-microphone"])
async def test_missing_camera_or_microphone_is_a_warning_not_a_crash(settings, tmp_path, monkeypatch, camera,
                                                                     microphone):
    """The devices the check looks for live in a directory the test controls, so both branches
    run here whatever this machine has."""
    dev, asound = tmp_path / "dev", tmp_path / "asound"
    (dev / "snd").mkdir(parents=True)
    asound.mkdir()
    if camera:
        (dev / "video0").touch()
    if microphone:
        (dev / "snd" / "pcmC0D0c").touch()
    monkeypatch.setattr(health, "read_camera", functools.partial(health.read_camera, str(dev / "video*")))
    monkeypatch.setattr(health, "read_microphone",
                        functools.partial(health.read_microphone, str(asound), str(dev / "snd")))
    h = await health.check_health(settings)
    assert h["camera"]["present"] is camera
    assert h["microphone"]["present"] is microphone
    assert ("camera: no video device (/dev/video*)" in h["problems"]) is not camera
    assert ("microphone: no ALSA capture device" in h["problems"]) is not microphone
    if not (camera and microphone):
        assert h["status"] in ("warn", "fail")


async def test_network_deltas_count_traffic_since_last_check(settings):
    checker = health.HealthChecker(settings)
    await checker.check()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        for _ in range(200):
            tx.sendto(b"x" * 100, rx.getsockname())
    finally:
        tx.close()
        rx.close()
    second = await checker.check()
    delta = second["network"]["interfaces"]["lo"]["delta"]
    assert delta is not None
    assert delta["packets_sent"] >= 200
    assert delta["bytes_sent"] >= 200 * 100
    assert second["network"]["interval_s"] > 0


async def test_check_does_not_block_the_event_loop(settings):
    slow = settings.model_copy(update={"health": HealthSettings(cpu_sample_s=0.5)})
    async with LoopTicks() as loop:
        await health.check_health(slow)
    assert loop.ticks >= 3       # the loop kept running while the CPU was sampled for 0.5 s


def test_microphone_from_alsa_files(tmp_path):
    asound = tmp_path / "asound"
    asound.mkdir()
    (asound / "cards").write_text(" 0 [PCH            ]: HDA-Intel - HDA Intel PCH\n"
                                  "                      HDA Intel PCH at 0xf7f10000 irq 32\n"
                                  " 1 [C920           ]: USB-Audio - HD Pro Webcam C920\n")
    snd = tmp_path / "snd"
    snd.mkdir()
    for name in ("pcmC0D0p", "controlC0"):
        (snd / name).touch()
    mic = health.read_microphone(str(asound), str(snd))
    assert mic["cards"] == ["HDA-Intel - HDA Intel PCH", "USB-Audio - HD Pro Webcam C920"]
    assert mic["present"] is False                      # playback only
    (snd / "pcmC1D0c").touch()
    mic = health.read_microphone(str(asound), str(snd))
    assert mic["present"] is True and mic["capture_devices"] == [str(snd / "pcmC1D0c")]


def test_camera_from_device_nodes(tmp_path):
    assert health.read_camera(str(tmp_path / "video*")) == {"present": False, "devices": []}
    (tmp_path / "video0").touch()
    cam = health.read_camera(str(tmp_path / "video*"))
    assert cam["present"] is True and cam["devices"][0]["path"] == str(tmp_path / "video0")


def test_default_route_from_proc_net_route(tmp_path):
    route = tmp_path / "route"
    route.write_text("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
                     "enp3s0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
                     "enp3s0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\n")
    assert health.default_route_interface(str(route)) == "enp3s0"
    route.write_text("Iface\tDestination\tGateway \tFlags\n")
    assert health.default_route_interface(str(route)) is None


def test_parse_time_daemon_output():
    chrony = ("Reference ID    : C0A80001 (192.168.0.1)\nStratum         : 3\n"
              "System time     : 0.001234567 seconds slow of NTP time\nLast offset     : -0.000012 seconds\n"
              "Leap status     : Normal\n")
    got = health.parse_chrony_tracking(chrony)
    assert got["offset_s"] == pytest.approx(-0.001234567) and got["synchronized"] is True
    got = health.parse_chrony_tracking(chrony.replace("slow", "fast").replace("Normal", "Not synchronised"))
    assert got["offset_s"] == pytest.approx(0.001234567) and got["synchronized"] is False
    timesync = "       Server: 192.168.0.1 (ntp.local)\n       Offset: -2.345ms\n        Delay: 1.1ms\n"
    assert health.parse_timesync_status(timesync)["offset_s"] == pytest.approx(-0.002345)
    assert health.parse_chrony_tracking("garbage") is None


# --- judgement of injected readings --------------------------------------------------

GOOD = {
    "cpu": {"percent": 12.0, "count": 4, "load": [0.5, 0.4, 0.3], "load_per_cpu": 0.125},
    "memory": {"total_bytes": 8 * 1024 ** 3, "used_bytes": 2 * 1024 ** 3, "available_bytes": 6 * 1024 ** 3,
               "used_ratio": 0.25},
    "disk": [{"mount": "/", "purposes": ["root", "outbox"], "total_bytes": 100 * 1024 ** 3,
              "used_bytes": 40 * 1024 ** 3, "free_bytes": 60 * 1024 ** 3, "used_ratio": 0.4}],
    "network": {"default_interface": "enp3s0", "interval_s": 30.0, "interfaces": {
        "lo": {"up": True, "loopback": True, "speed_mbps": None, "delta": None},
        "enp3s0": {"up": True, "loopback": False, "speed_mbps": 1000, "delta": {
            "packets_recv": 30000, "packets_sent": 28000, "errin": 0, "errout": 0, "dropin": 0, "dropout": 0}},
        "wlan0": {"up": False, "loopback": False, "speed_mbps": None, "delta": None},
    }},
    "camera": {"present": True, "devices": [{"path": "/dev/video0", "name": "HD Pro Webcam C920"}]},
    "microphone": {"present": True, "cards": ["USB-Audio"], "capture_devices": ["/dev/snd/pcmC1D0c"]},
    "clock": {"synchronized": True, "offset_s": 0.002, "max_error_s": None, "source": "chronyc", "reason": None},
}


def _with(path: str, value):
    r = copy.deepcopy(GOOD)
    node = r
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    node[keys[-1]] = value
    return r


CFG = HealthSettings()


def test_healthy_readings_are_ok():
    assert health.evaluate(GOOD, CFG) == ("ok", [])


@pytest.mark.parametrize("path, value, status, problem", [
    ("cpu.percent", 90.0, "warn", "CPU busy 90% >= 85%"),
    ("cpu.percent", 99.5, "fail", "CPU busy 100% >= 98%"),
    ("cpu.load_per_cpu", 3.0, "warn", "load 3.0 per CPU >= 2.0"),
    ("memory.used_ratio", 0.9, "warn", "memory 90% used >= 85%"),
    ("memory.used_ratio", 0.97, "fail", "memory 97% used >= 95%"),
    ("disk.0.used_ratio", 0.93, "warn", "disk / (root, outbox) 93% used, 60.0 GiB free"),
    ("disk.0.free_bytes", 100 * 1024 ** 2, "fail", "disk / (root, outbox) 40% used, 100 MiB free"),
    ("network.interfaces.enp3s0.up", False, "fail", "network interface enp3s0 down"),
    ("network.interfaces.enp3s0.speed_mbps", 10, "warn", "network interface enp3s0 at 10 Mbit/s < 100 Mbit/s"),
    ("network.interfaces.enp3s0.delta.errin", 7, "warn",
     "network interface enp3s0: 7 errors since the last check (in 7, out 0)"),
    ("network.interfaces.enp3s0.delta.dropin", 1200, "warn",
     "network interface enp3s0: 1200 packets dropped of 59200 since the last check"),
    ("camera.present", False, "warn", "camera: no video device (/dev/video*)"),
    ("microphone.present", False, "warn", "microphone: no ALSA capture device"),
    ("clock.offset_s", -1.5, "warn", "clock off by -1.500 s (limit 0.5 s)"),
    ("clock.offset_s", 42.0, "fail", "clock off by +42.000 s (limit 10 s)"),
    ("clock", {"synchronized": False, "offset_s": None, "reason": "chronyd is not synchronised"},
     "warn", "clock: chronyd is not synchronised"),
    ("network.default_interface", None, "warn", "network: no default route"),
])
def test_each_problem_is_named(path, value, status, problem):
    got_status, problems = health.evaluate(_with(path, value), CFG)
    assert (got_status, problems) == (status, [problem])


def test_few_drops_are_no_problem():
    assert health.evaluate(_with("network.interfaces.enp3s0.delta.dropin", 3), CFG) == ("ok", [])


def test_no_interface_up_is_a_failure():
    r = _with("network.default_interface", None)
    r["network"]["interfaces"]["enp3s0"]["up"] = False
    assert health.evaluate(r, CFG) == ("fail", ["network: no interface up besides loopback"])


def test_configured_interfaces_replace_the_default_route():
    cfg = HealthSettings(interfaces=["enp3s0", "enp4s0"])
    assert health.evaluate(GOOD, cfg) == ("fail", ["network interface enp4s0 missing"])


def test_missing_devices_can_be_made_failures_and_failures_come_first():
    cfg = HealthSettings(camera_missing="fail", microphone_missing="ok")
    r = _with("camera.present", False)
    r["microphone"]["present"] = False
    r["cpu"]["percent"] = 90.0
    assert health.evaluate(r, cfg) == ("fail", ["camera: no video device (/dev/video*)", "CPU busy 90% >= 85%"])


def test_unknown_readings_are_not_problems():
    # A reading the machine could not give (None) is not judged.
    r = _with("cpu.percent", None)
    r["memory"]["used_ratio"] = None
    r["clock"] = {"synchronized": None, "offset_s": None, "reason": "no time daemon status available"}
    assert health.evaluate(r, CFG) == ("ok", [])


def test_health_settings_errors_name_the_file_and_key(tmp_path):
    p = tmp_path / "agent.yaml"
    p.write_text("health:\n  memory_warn_ratio: 0.99\n")
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert str(err.value).startswith(f"{p}: key 'health'")
    assert "memory_warn_ratio" in str(err.value)
    p.write_text("health:\n  camera_missing: maybe\n")
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert err.value.key == "health.camera_missing"
