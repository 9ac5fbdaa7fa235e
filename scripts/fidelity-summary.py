#!/usr/bin/env python3
"""Summarises the replicated fidelity study (scripts/fidelity.sh) from OUT/<workload>-<load>/cell/<policy>/cell.json.

Usage: scripts/fidelity-summary.py [OUT_DIR]   (default out/fidelity)

Per cell: each aim's gap with its 95 % interval and verdict, the engine/queueing term (median |error| of
the simulator re-run on the live step log), the cost term (target forwards measured / predicted, and the
verdicts of the prediction re-run at that speed), the
acceptance term (accepted tokens per step, predicted / measured), the workload term (prompt lengths
served vs the trace), and the replicates used, left out and flagged noisy. Then the count of cells per
verdict and, for each disagreeing cell, the terms beside its gap."""
import json
import pathlib
import statistics
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "out/fidelity")
cells = sorted(root.glob("*/cell/*/cell.json"))
if not cells:
    sys.exit(f"no cells under {root} (run scripts/fidelity.sh first)")


def gap(m):
    g = m["gap"]
    if m["gap_kind"] == "points":
        return f"{g['point']:+.1f} [{g['lo']:+.1f}, {g['hi']:+.1f}] pp"
    return f"{g['point'] * 100:+.1f} [{g['lo'] * 100:+.1f}, {g['hi'] * 100:+.1f}] %"


def cost_ratio(c):
    """Measured / predicted over all target forwards (prefill and decode/verify together)."""
    meas = sum(g["measured_s"] for g in c["cost"] if g["seqs"] is None and g["kind"] != "draft")
    pred = sum(g["predicted_s"] for g in c["cost"] if g["seqs"] is None and g["kind"] != "draft")
    return f"{meas / pred:.3f}" if pred > 0 else "—"


def followed(engine_terms):
    """Percent of the re-runs' forwards that matched a logged forward of the same batch size."""
    m = [e["matching"] for e in engine_terms]
    used = sum(x["matched"] + x["mismatched"] + x["beyond_log"] for x in m)
    return sum(x["matched"] for x in m) / used * 100 if used else 100.0


def engine(c):
    """Median over replicates of the re-run's median |error|; `vs engine` when it was compared with the
    engine's own latencies (steps.requests.csv), with the share of logged forwards it followed."""
    v = [e["tpot_median_abs_rel"] for e in c["engine"] if e["tpot_median_abs_rel"] is not None]
    t = [e["ttft_median_abs_rel"] for e in c["engine"] if e["ttft_median_abs_rel"] is not None]
    if not v:
        return "—"
    against = {e.get("against") or "client" for e in c["engine"]}
    matched = followed(c["engine"])
    return (f"TTFT {statistics.median(t) * 100:.2f} %, TPOT {statistics.median(v) * 100:.2f} % "
            f"(vs {'/'.join(sorted(against))}, {matched:.0f} % fwd matched)")


def serving_path(c):
    """Client − engine per request (steps.requests.csv), median over replicates of each's median/p90."""
    s = [e["serving_path"] for e in c["engine"] if e.get("serving_path")]
    if not s:
        return None
    med = lambda k: statistics.median(x[k] for x in s if x[k] is not None) * 1e3
    return f"TTFT {med('ttft_median_s'):.2f} ms (p90 {med('ttft_p90_s'):.2f}), TPOT {med('tpot_median_s'):.3f} ms"


def at_speed(c):
    """Verdicts of the prediction re-run at each replicate's own forward speed (the cost term in latency)."""
    a = c.get("at_live_speed")
    if not a:
        return "—"
    ms = {m["metric"]: m for m in a["metrics"]}
    return " / ".join(ms[k]["verdict"][:5] for k in ("attainment", "p50_tpot", "p99_ttft"))


def acceptance(c):
    a = c.get("acceptance")
    if not a or a.get("accepted_per_step_measured") is None:
        return "—"
    return f"{a['accepted_per_step_predicted']:.2f} / {a['accepted_per_step_measured']:.2f}"


print("| cell | policy | attainment gap | p50 TPOT gap | p99 TTFT gap | verdicts | engine/queueing | "
      "target fwd meas/pred | verdicts at live speed | accepted/step pred/meas | prompts vs trace | "
      "replicates (left out, noisy) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
counts = {}
disagree = []
engine_terms = []
engine_ttft_terms = []
by_method = {}
paths = []
for path in cells:
    c = json.loads(path.read_text())
    cell = path.parent.parent.parent.name
    ms = {m["metric"]: m for m in c["metrics"]}
    verdicts = [ms[k]["verdict"] for k in ("attainment", "p50_tpot", "p99_ttft")]
    for v in verdicts:
        counts[v] = counts.get(v, 0) + 1
    engine_terms += [e["tpot_median_abs_rel"] for e in c["engine"] if e["tpot_median_abs_rel"] is not None]
    engine_ttft_terms += [e["ttft_median_abs_rel"] for e in c["engine"] if e["ttft_median_abs_rel"] is not None]
    for e in c["engine"]:
        if e["tpot_median_abs_rel"] is not None:
            by_method.setdefault(e.get("against") or "client", []).append(e)
    if serving_path(c):
        paths.append((cell, c["policy"], serving_path(c)))
    worst = ("disagrees" if "disagrees" in verdicts else
             "indistinguishable" if "indistinguishable" in verdicts else
             "undecided" if "undecided" in verdicts else "agrees")
    counts["cell:" + worst] = counts.get("cell:" + worst, 0) + 1
    if worst == "disagrees":
        disagree.append((cell, c))
    print(f"| {cell} | {c['policy']} | {gap(ms['attainment'])} | {gap(ms['p50_tpot'])} | {gap(ms['p99_ttft'])} "
          f"| {' / '.join(v[:5] for v in verdicts)} | {engine(c)} | {cost_ratio(c)} | {at_speed(c)} | {acceptance(c)} "
          f"| {c['workload']['prompt_mean_rel'] * 100:+.1f} % | {c['measured_replicates']} "
          f"({len(c['excluded'])}, {len(c['noisy_replicates'])}) |")

print()
n = len(cells)
print(f"{n} cells. By cell (its worst metric): {counts.get('cell:agrees', 0)} agree, "
      f"{counts.get('cell:indistinguishable', 0)} indistinguishable, {counts.get('cell:disagrees', 0)} disagree, "
      f"{counts.get('cell:undecided', 0)} undecided. By metric: {counts.get('agrees', 0)} agree, "
      f"{counts.get('indistinguishable', 0)} indistinguishable, {counts.get('disagrees', 0)} disagree "
      f"(of {3 * n}).")
if engine_terms:
    print(f"Engine/queueing term (median |error| of the re-run, per replicate): TPOT median "
          f"{statistics.median(engine_terms) * 100:.2f} %, TTFT median "
          f"{statistics.median(engine_ttft_terms) * 100:.2f} % over {len(engine_terms)} replicates.")
    for method, es in sorted(by_method.items()):
        what = ("with the engine's request log, against its own latencies" if method == "engine"
                else "without it (trace arrivals, against the client's latencies)")
        print(f"- {what}: TTFT median {statistics.median(e['ttft_median_abs_rel'] for e in es) * 100:.3f} %, "
              f"TPOT median {statistics.median(e['tpot_median_abs_rel'] for e in es) * 100:.3f} % over "
              f"{len(es)} replicates; {followed(es):.1f} % of "
              f"forwards followed.")
if paths:
    print()
    print("Serving path, client − engine per request (steps.requests.csv; medians over replicates):")
    print()
    print("| cell | policy | serving path |")
    print("|---|---|---|")
    for cell, policy, text in paths:
        print(f"| {cell} | {policy} | {text} |")
overheads = [(path.parent.parent.parent.name, c) for path in cells
             for c in [json.loads(path.read_text())] if c.get("serving_overhead")]
if overheads:
    print()
    print("Serving overhead (HTTP - in process, per request; MODE=both):")
    print()
    print("| cell | policy | requests | TTFT median | TTFT p90 | TPOT median | TPOT p90 |")
    print("|---|---|---|---|---|---|---|")
    for cell, c in overheads:
        o = c["serving_overhead"]
        ms = lambda x: "n/a" if x is None else f"{x * 1e3:.2f} ms"
        print(f"| {cell} | {c['policy']} | {o['requests']} | {ms(o['ttft_median_s'])} | {ms(o['ttft_p90_s'])} "
              f"| {ms(o['tpot_median_s'])} | {ms(o['tpot_p90_s'])} |")
    print()
noisy = sum(len(json.loads(p.read_text())["noisy_replicates"]) for p in cells)
used = sum(json.loads(p.read_text())["measured_replicates"] for p in cells)
print(f"Noise monitor: {noisy} of {used} live replicates used were flagged.")
for cell, c in disagree:
    bad = [m["metric"] for m in c["metrics"] if m["verdict"] == "disagrees"]
    print(f"- {cell} {c['policy']} disagrees on {', '.join(bad)}: engine/queueing {engine(c)}, "
          f"target forwards meas/pred {cost_ratio(c)} (verdicts at that speed: {at_speed(c)}), "
          f"accepted/step pred/meas {acceptance(c)}, "
          f"prompts {c['workload']['prompt_mean_rel'] * 100:+.1f} % vs the trace")
