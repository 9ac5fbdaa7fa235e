#!/usr/bin/env python3
"""Prints the results table of docs/FIDELITY.md from out/fidelity/*/compare/compare.json
(written by scripts/fidelity.sh). Usage: scripts/fidelity-table.py [OUT_DIR]

The `fwd meas/pred` column is the live engine's total forward time over what the profile predicts for
the same forwards (serve's /metrics, saved as meas/<policy>/metrics.txt): the cost term's error alone,
with queueing and workload effects taken out."""
import json
import pathlib
import re
import sys


def forward_ratio(metrics_txt):
    """Measured / predicted forward seconds, both models together; None when not recorded."""
    if not metrics_txt.exists():
        return None
    tot = {"specsim_forward_seconds_total": 0.0, "specsim_forward_predicted_seconds_total": 0.0}
    for line in metrics_txt.read_text().splitlines():
        m = re.match(r"(specsim_forward(?:_predicted)?_seconds_total)\{[^}]*\} ([0-9.eE+-]+)$", line)
        if m:
            tot[m.group(1)] += float(m.group(2))
    pred = tot["specsim_forward_predicted_seconds_total"]
    return tot["specsim_forward_seconds_total"] / pred if pred > 0 else None


root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "out/fidelity")
AIM_PP, AIM_TPOT, AIM_TTFT = 3.0, 0.05, 0.15
print("| workload | load | policy | SLO pred | SLO meas | Δ pp | p50 TPOT err | p99 TTFT err "
      "| mean TPOT err | TPOT r | fwd meas/pred | meets aims |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
order = {"none": 0, "static-4": 1, "specserve": 2}
for cell in sorted(root.glob("*/compare/compare.json")):
    name = cell.parent.parent.name
    workload, load = name.rsplit("-", 1)
    data = json.loads(cell.read_text())
    for p in sorted(data["policies"], key=lambda p: order.get(p["policy"], 9)):
        m = {x["metric"]: x for x in p["metrics"]}
        dpp = p["slo_attainment"]["diff_pp"]
        tpot50 = m["tpot"]["p_rel_error"][0]
        ttft99 = m["ttft"]["p_rel_error"][2]
        misses = []
        if abs(dpp) > AIM_PP:
            misses.append("SLO")
        if abs(tpot50) > AIM_TPOT:
            misses.append("TPOT")
        if abs(ttft99) > AIM_TTFT:
            misses.append("TTFT")
        verdict = "yes" if not misses else "no: " + ", ".join(misses)
        ratio = forward_ratio(cell.parent.parent / "meas" / p["policy"] / "metrics.txt")
        ratio = f"{ratio:.3f}" if ratio is not None else "–"
        print(f"| {workload} | {load} % | {p['policy']} "
              f"| {100 * p['slo_attainment']['predicted']:.1f}% "
              f"| {100 * p['slo_attainment']['measured']:.1f}% | {dpp:+.1f} "
              f"| {100 * tpot50:+.1f}% | {100 * ttft99:+.1f}% "
              f"| {100 * m['tpot']['mean_rel_error']:+.1f}% | {m['tpot']['pearson']:.3f} | {ratio} | {verdict} |")
