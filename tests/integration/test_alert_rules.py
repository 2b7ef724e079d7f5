"""The Prometheus rules, their unit tests and the Grafana dashboard agree with the code.

`promtool check rules` and `promtool test rules` run for real (Debian's `prometheus`
package; make test installs it). Every metric name in a rule or dashboard expression must
be one this process exposes, every alert must name a runbook that exists, and every
dashboard panel must use the `${datasource}` variable.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from realtimechat.observability import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "deploy/prometheus/tests").glob("*.yml"))
DASHBOARD = ROOT / "deploy/grafana/realtimechat.json"
RUNBOOKS = ROOT / "docs/runbooks"

# A metric name starting with rtc_, not part of a longer name (a recorded `level:rtc_…`).
METRIC = re.compile(r"(?<![\w:])rtc_[a-z_]+")
SELECTOR = re.compile(r"(?<![\w:])(rtc_[a-z_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
RECORDED = re.compile(r"(?<![\w:])([a-z_]+:[a-z_:0-9]+)")
# Labels Prometheus adds to every scraped series, and the histogram bucket label.
TARGET_LABELS = {"job", "instance"}
SEVERITIES = {"page", "ticket"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (make test installs Debian's prometheus package)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(result.args)}\nexit {result.returncode}\n{result.stdout}{result.stderr}"


# --------------------------------------------------------------------------- the catalogue


def exposed_names() -> set[str]:
    """Every series name /metrics can show, from generate_latest() of the real registry.

    A labelled metric with no child yet shows only its `# TYPE` line, so the sample names a
    histogram will have (`_bucket`, `_count`, `_sum`) are added from its type; a counter's
    TYPE line already carries the `_total` it is exposed with.
    """
    names: set[str] = set()
    for line in generate_latest(REGISTRY).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind == "histogram":  # the family name itself is no series
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
            elif kind == "summary":
                names.update(f"{name}{suffix}" for suffix in ("", "_count", "_sum"))
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return {n for n in names if n.startswith("rtc_")}


def label_names() -> dict[str, set[str]]:
    """Exposed name -> the labels its series carry (target labels and `le` included)."""
    out: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        base: str = value._name
        labels = set(value._labelnames) | TARGET_LABELS
        kind = value._type
        if kind == "counter":
            out[f"{base}_total"] = labels
        elif kind == "histogram":
            out[f"{base}_bucket"] = labels | {"le"}
            out[f"{base}_count"] = out[f"{base}_sum"] = labels
        else:
            out[base] = labels
    return out


def _check_exprs(exprs: dict[str, str]) -> list[str]:
    """Problems with the rtc_ names and labels used in `exprs` (where -> PromQL)."""
    exposed = exposed_names()
    labels = label_names()
    problems: list[str] = []
    for where, expr in exprs.items():
        for name in sorted(set(METRIC.findall(expr))):
            if name in exposed:
                continue
            suffixes = ("_total", "_bucket", "_count", "_sum")
            near = [f"{name}{s}" for s in suffixes if f"{name}{s}" in exposed]
            near += [name.removesuffix(s) for s in suffixes if name.removesuffix(s) in exposed]
            hint = f" (exposed: {', '.join(near)})" if near else ""
            problems.append(f"{where}: {name} is not exposed by realtimechat{hint}")
        known = set().union(*(labels.get(n, set()) for n in METRIC.findall(expr)))
        for name, matchers in SELECTOR.findall(expr):
            for label in MATCHER.findall(matchers):
                if name in labels and label not in labels[name]:
                    problems.append(f"{where}: {name} has no label {label!r}")
        for group in GROUPING.findall(expr):
            for label in (g.strip() for g in group.split(",")):
                if label and known and label not in known | {"slo"}:
                    problems.append(f"{where}: no metric in the expression has label {label!r}")
    return problems


def test_exposed_names_include_the_slis() -> None:
    """The catalogue the checks below compare against is the real one."""
    exposed = exposed_names()
    for name in (
        "rtc_message_sends_total",
        "rtc_send_to_deliver_seconds_bucket",
        "rtc_send_to_deliver_seconds_count",
        "rtc_http_requests_total",
        "rtc_http_request_duration_seconds_bucket",
        "rtc_provider_call_seconds_bucket",  # labelled, no child yet: from its TYPE line
        "rtc_outbox_lag_seconds",
    ):
        assert name in exposed, sorted(exposed)
    assert "rtc_message_sends" not in exposed  # declared without _total, never exposed so
    assert "rtc_send_to_deliver_seconds" not in exposed  # a histogram's family name
    assert "0.2" in {str(b) for b in metrics.SEND_TO_DELIVER._upper_bounds}


# --------------------------------------------------------------------------- rule files


def _rule_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in RULES:
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                yield path, rule


def test_promtool_checks_and_unit_tests_pass() -> None:
    promtool = _promtool()
    assert RULES, "no rule files in deploy/prometheus/rules"
    assert RULE_TESTS, "no promtool tests in deploy/prometheus/tests"
    check = _run(promtool, "check", "rules", *(str(p.relative_to(ROOT)) for p in RULES))
    assert check.returncode == 0, _report(check)
    # One process per test file, in parallel: the burn-rate files evaluate days of samples.
    with ThreadPoolExecutor(max_workers=len(RULE_TESTS)) as pool:
        results = list(
            pool.map(
                lambda p: _run(promtool, "test", "rules", str(p.relative_to(ROOT))), RULE_TESTS
            )
        )
    failed = [r for r in results if r.returncode != 0]
    assert not failed, "\n\n".join(_report(r) for r in failed)
    for result in results:
        assert "SUCCESS" in result.stdout, _report(result)


def test_every_alert_has_severity_summary_and_an_existing_runbook() -> None:
    alerts: set[str] = set()
    problems: list[str] = []
    for path, rule in _rule_docs():
        if "alert" not in rule:
            continue
        name = rule["alert"]
        alerts.add(name)
        where = f"{path.name}: {name}"
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{where}: severity must be one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            if not annotations.get(key):
                problems.append(f"{where}: no {key}")
        url = annotations.get("runbook_url", "")
        if not url.endswith(f"docs/runbooks/{name}.md"):
            problems.append(f"{where}: runbook_url {url!r} is not docs/runbooks/{name}.md")
        elif not (RUNBOOKS / f"{name}.md").is_file():
            problems.append(f"{where}: {RUNBOOKS / f'{name}.md'} does not exist")
        if path.name == "alerts.yml" and not rule.get("for"):
            problems.append(f"{where}: a cause-based alert needs a for: period")
    assert not problems, "\n".join(problems)
    index = (RUNBOOKS / "README.md").read_text()
    unlisted = sorted(a for a in alerts if f"({a}.md)" not in index)
    assert not unlisted, f"docs/runbooks/README.md does not link {unlisted}"
    expected = {
        "SendSuccessBudgetBurn",
        "SendLatencyBudgetBurn",
        "AvailabilityBudgetBurn",
        "NodeDown",
        "WorkerDown",
        "OutboxLagging",
        "BusDegraded",
        "DatabaseSaturated",
        "ProviderCircuitOpen",
        "NotificationsDead",
        "NotificationBacklog",
        "LoadShedding",
    }
    assert expected <= alerts, f"missing alerts: {sorted(expected - alerts)}"


def test_rule_expressions_use_exposed_metrics_and_recorded_series() -> None:
    exprs: dict[str, str] = {}
    recorded: set[str] = set()
    for path, rule in _rule_docs():
        name = rule.get("record") or rule["alert"]
        key = f"{path.name}: {name}"
        while key in exprs:
            key += "'"
        exprs[key] = rule["expr"]
        if "record" in rule:
            recorded.add(rule["record"])
    problems = _check_exprs(exprs)
    for where, expr in exprs.items():
        for name in RECORDED.findall(expr):
            if name not in recorded:
                problems.append(f"{where}: {name} is not recorded by any rule")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- dashboard


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_exprs() -> dict[str, str]:
    dashboard = _dashboard()
    exprs: dict[str, str] = {}
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            exprs[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            exprs[f"variable {variable['name']}"] = (
                query["query"] if isinstance(query, dict) else query
            )
    return exprs


def test_dashboard_structure() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    for title in ("SLOs", "Traffic", "Live delivery", "Dependencies", "Scaling signals"):
        assert any(r.startswith(title) for r in rows), f"no row {title!r} in {rows}"
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_expressions_use_exposed_metrics_and_recorded_series() -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) > 30
    problems = _check_exprs(exprs)
    recorded = {rule["record"] for _, rule in _rule_docs() if "record" in rule}
    for where, expr in exprs.items():
        for name in RECORDED.findall(expr):
            if name not in recorded:
                problems.append(f"{where}: {name} is not recorded in deploy/prometheus/rules")
    assert not problems, "\n".join(problems)


def test_dashboard_expressions_parse(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, is valid PromQL to promtool."""
    promtool = _promtool()
    rules = []
    for i, expr in enumerate(_dashboard_exprs().values()):
        promql = (
            expr.replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$instance", ".*")
        )
        if not promql.startswith("label_values("):
            rules.append({"record": f"dashboard:query_{i}", "expr": promql})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, _report(result)
