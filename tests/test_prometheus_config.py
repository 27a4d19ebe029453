"""configs/prometheus: the scrape config and the alert rules are valid for Prometheus itself
(promtool, from Debian's `prometheus` package: scripts/system-packages.sh), the alert rules
behave as their unit tests say (alerts_test.yml: fire after their `for`, not on a flapping
link...), and they use only metrics that docs/metrics.md lists."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.harness import needs_system
from tests.test_metrics_docs import documented

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = needs_system(
    None if PROMTOOL else "promtool not installed (Debian package `prometheus`; scripts/system-packages.sh)")
METRIC = re.compile(r"\b(vks_[a-z0-9_]+)\b")
SERIES_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=CONFIGS, capture_output=True, text=True, timeout=60)


def referenced_metrics(expr: str) -> set[str]:
    """The vks_ metric names an expression reads (series suffixes mapped to their metric)."""
    names = set()
    doc = documented()
    for name in METRIC.findall(expr):
        if name not in doc:
            for suffix in SERIES_SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in doc:
                    name = name[: -len(suffix)]
        names.add(name)
    return names


@needs_promtool
def test_scrape_config_is_valid():
    out = promtool("check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@needs_promtool
def test_alert_rules_are_valid():
    out = promtool("check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_alert_rules_unit_tests_pass():
    out = promtool("test", "rules", "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_a_wrong_expectation_fails(tmp_path):
    """The unit tests can fail: the same tests expecting a flapping link to alert do."""
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(CONFIGS / name, tmp_path / name)
    text = (tmp_path / "alerts_test.yml").read_text()
    text = text.replace("""      - eval_time: 2m
        alertname: VksLinkUnusable
        exp_alerts: []""", """      - eval_time: 2m
        alertname: VksLinkUnusable
        exp_alerts:
          - exp_labels: {severity: critical, terminal: court-almaty-2, peer: sizo-almaty-2, verdict: unusable}""", 1)
    (tmp_path / "alerts_test.yml").write_text(text)
    out = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert "VksLinkUnusable" in out.stdout + out.stderr


def test_alert_rules_use_only_documented_metrics_and_cover_the_rules():
    rules = yaml.safe_load((CONFIGS / "alerts.yml").read_text())
    doc = documented()
    alerts = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            alerts[rule["alert"]] = rule
            unknown = referenced_metrics(rule["expr"]) - set(doc)
            assert not unknown, f"{rule['alert']} uses undocumented metrics {unknown}"
            assert rule["labels"]["severity"] in ("critical", "warning")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    # What the operators were promised (issue 6).
    for name in ("VksAgentDown", "VksLinkUnusable", "VksLinkDegraded", "VksTestDeadlineOverdue",
                 "VksPreconnectFailed", "VksTerminalHealthFail", "VksOutboxBackingUp", "VksControllerDown",
                 "VksDatabaseErrors"):
        assert name in alerts
    tested = set(re.findall(r"alertname:\s*(\w+)", (CONFIGS / "alerts_test.yml").read_text()))
    assert set(alerts) <= tested, f"alerts without a unit test: {set(alerts) - tested}"


def test_agents_are_found_through_file_sd():
    config = yaml.safe_load((CONFIGS / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["vks-controller"]["metrics_path"] == "/metrics"
    files = jobs["vks-agent"]["file_sd_configs"][0]["files"]
    matched = [p for pattern in files for p in CONFIGS.glob(pattern)]
    assert matched, f"no example targets file matches {files}"
    for path in matched:
        for group in yaml.safe_load(path.read_text()):
            assert group["targets"] and all(re.fullmatch(r"[\w.-]+:\d+", t) for t in group["targets"])
            assert group["labels"]["terminal"]
