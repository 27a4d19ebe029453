"""configs/grafana: the provisioned dashboard has a fixed uid, takes its Prometheus from a
`datasource` variable, shows what a hearing day needs, and every query reads only metrics that
docs/metrics.md lists (and parses as PromQL, checked by promtool where installed)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.harness import needs_system
from tests.test_metrics_docs import documented
from tests.test_prometheus_config import referenced_metrics

GRAFANA = Path(__file__).resolve().parent.parent / "configs" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "vks-hearing-day.json"


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def queries(d: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in d["panels"] for t in p.get("targets", [])]


def test_dashboard_has_a_fixed_uid_and_a_datasource_variable():
    d = dashboard()
    assert d["uid"] == "vks-hearing-day"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
    # Nothing points at one particular datasource.
    assert "vks-prometheus" not in DASHBOARD.read_text()


def test_panels_are_laid_out_on_the_grid_without_duplicate_ids():
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]


def test_every_query_reads_only_documented_metrics():
    doc = documented()
    for title, expr in queries(dashboard()):
        names = referenced_metrics(expr)
        assert names, f"{title}: {expr} reads no vks_ metric"
        assert names <= set(doc), f"{title}: undocumented {names - set(doc)}"
        for name in names:
            assert "controller" in doc[name]["by"] or "run" in doc[name]["by"], name
    variable = next(v for v in dashboard()["templating"]["list"] if v["name"] == "terminal")
    assert referenced_metrics(variable["definition"]) <= set(doc)


def test_it_shows_a_hearing_day_at_a_glance():
    exprs = " ".join(e for _, e in queries(dashboard()))
    for metric in ("vks_terminal_up", "vks_hearings", "vks_checks_overdue", "vks_link_loss_ratio",
                   "vks_link_jitter_seconds", "vks_link_rtt_seconds", "vks_link_mos", "vks_breaks_total",
                   "vks_escalations_total", "vks_terminal_health_level"):
        assert re.search(rf"\b{metric}\b", exprs), f"the dashboard does not show {metric}"


def test_a_trends_row_shows_the_last_check_per_pair():
    d = dashboard()
    rows = [p for p in d["panels"] if p["type"] == "row" and p["title"].startswith("Trends")]
    assert len(rows) == 1
    exprs = " ".join(e for _, e in queries(d))
    for metric in ("vks_pair_last_check_loss_ratio", "vks_pair_last_check_jitter_seconds",
                   "vks_pair_last_check_rtt_seconds", "vks_pair_last_check_capacity_bits_per_second",
                   "vks_pair_last_check_timestamp_seconds", "vks_pair_last_check_pairs_omitted"):
        assert re.search(rf"\b{metric}\b", exprs), f"the Trends row does not show {metric}"


@needs_system(None if shutil.which("promtool") else
              "promtool not installed (Debian package `prometheus`; scripts/system-packages.sh)")
def test_every_query_is_valid_promql(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$terminal", ".*")}
        for i, (_, expr) in enumerate(queries(dashboard()))]}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    out = subprocess.run(["promtool", "check", "rules", str(tmp_path / "queries.yml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_provisioning_files():
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "vks-prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "${VKS_PROMETHEUS_URL}"          # from grafana-server's environment
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "vks.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    install = (GRAFANA.parent.parent / "docs" / "install.md").read_text()
    assert provider["options"]["path"] in install, "docs/install.md must say where the dashboards go"
