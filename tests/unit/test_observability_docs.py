"""The metric catalogue stays true: every Prometheus metric the code defines is in README's Metrics table, and the
Grafana dashboard queries only metrics that exist, in expressions whose brackets balance."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFINED = re.compile(r"\b(Counter|Gauge|Histogram|Info|Summary)\(\s*\"(newsrec_[a-z0-9_]+)\"")
SUFFIXES = {"Counter": ("_total", ""), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count", ""),
            "Info": ("_info",), "Summary": ("_sum", "_count", "")}


def defined_metrics() -> dict[str, str]:
    """name as documented (counters with _total, infos with _info) -> type, from every package's source."""
    out = {}
    for package in ("serving", "streaming", "feature_store", "newsrec", "recsys"):
        for path in (ROOT / package).rglob("*.py"):
            for kind, name in DEFINED.findall(path.read_text(encoding="utf-8")):
                base = name.removesuffix("_total")
                out[{"Counter": f"{base}_total", "Info": f"{name}_info"}.get(kind, name)] = kind
    return out


def readme_catalogue() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(newsrec_[a-z0-9_]+)` \|", section, flags=re.M))


def test_every_metric_is_in_the_readme_catalogue_and_nothing_else():
    defined = defined_metrics()
    assert {"newsrec_shed_total", "newsrec_recommend_seconds", "newsrec_stream_consumer_lag"} <= defined.keys()
    catalogue = readme_catalogue()
    assert not defined.keys() - catalogue, f"add to README's Metrics table: {sorted(defined.keys() - catalogue)}"
    assert not catalogue - defined.keys(), f"README lists metrics no code defines: {sorted(catalogue - defined.keys())}"


def test_the_dashboard_queries_only_defined_metrics():
    defined = defined_metrics()
    series = {f"{name.removesuffix('_total') if kind == 'Counter' else name.removesuffix('_info')}{suffix}"
              for name, kind in defined.items() for suffix in SUFFIXES[kind]}
    dash = json.loads((ROOT / "docs" / "grafana" / "newsrec.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    used = {m for e in exprs for m in re.findall(r"\b(newsrec_[a-z0-9_]+)", e)}
    assert not used - series, f"the dashboard queries undefined metrics: {sorted(used - series)}"
    for e in exprs:
        for open_, close in ("()", "[]", "{}"):
            assert e.count(open_) == e.count(close), e
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("traffic", "latency", "errors", "saturation", "stage", "freshness", "consumer lag"):
        assert topic in titles
