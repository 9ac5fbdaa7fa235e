#!/usr/bin/env python3
"""Writes a cost/acceptance profile for the simulator from a live calibration run's step log and /metrics.

Usage: scripts/profile-from-steps.py STEPS.csv METRICS.txt OUT.toml

For a configuration `specsim calibrate` cannot time (a target with n-gram drafting: calibrate times a
draft *model*), a short live run of the same engine on the same machine is the calibration: run
`specsim replay --in-process ... --policy static-4 --ngram` on a calibration workload (another seed than
the study's), then fit here. Target forwards are fitted by least squares, decode/verify as
`a + b·new_tokens` and prefill as `a + b·prefill_tokens` (nanoseconds), and
the profile's grids are those fits evaluated at the grid points (so the simulator interpolates the fit);
draft forwards (n-gram lookups) take their median. Acceptance is the engine's measured conditional rate
per draft position (`acceptance.kind = "per_position"`). The provenance says all this."""
import csv
import statistics
import sys
import time


def solve(a, b):
    """Solves the square system a·x = b (Gaussian elimination with partial pivoting)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        if abs(m[c][c]) < 1e-12:
            return None
        for r in range(n):
            if r != c:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c])]
    return [m[i][n] / m[i][i] for i in range(n)]


def least_squares(xs, ys):
    """Coefficients minimising Σ (x·β − y)²; columns that never vary get 0."""
    k = len(xs[0])
    used = [j for j in range(k) if j == 0 or len({x[j] for x in xs}) > 1]
    ata = [[sum(x[i] * x[j] for x in xs) for j in used] for i in used]
    aty = [sum(x[i] * y for x, y in zip(xs, ys)) for i in used]
    beta = solve(ata, aty) or [statistics.median(ys)] + [0.0] * (len(used) - 1)
    out = [0.0] * k
    for j, b in zip(used, beta):
        out[j] = b
    return out


def mape(xs, ys, beta):
    return statistics.median(abs(sum(a * b for a, b in zip(x, beta)) - y) / y for x, y in zip(xs, ys) if y > 0)


steps_path, metrics_path, out_path = sys.argv[1:4]
rows = list(csv.DictReader(open(steps_path)))
dec_x, dec_y, pre_x, pre_y, draft = [], [], [], [], []
for r in rows:
    ns = float(r["measured_s"]) * 1e9
    seqs, new, pre, ctx = int(r["seqs"]), int(r["new_tokens"]), int(r["prefill_tokens"]), int(r["context_tokens"])
    if r["model"] == "draft":
        draft.append(ns)
    elif pre > 0 and pre == new:
        pre_x.append([1.0, pre])
        pre_y.append(ns)
    elif pre == 0:
        # Context and batch terms are left out: a short calibration run cannot separate them from
        # the token count (they came out negative on 40 forwards), and on a CPU the forward is
        # compute-bound in the tokens.
        dec_x.append([1.0, new, 0.0, 0.0])
        dec_y.append(ns)
if len(dec_y) < 8 or len(pre_y) < 3:
    sys.exit(f"{steps_path}: too few forwards to fit ({len(dec_y)} decode/verify, {len(pre_y)} prefill-only)")
dec = least_squares(dec_x, dec_y)
pre = least_squares(pre_x, pre_y)
draft_ns = statistics.median(draft) if draft else 1e4

counts = {"d": {}, "a": {}}
for line in open(metrics_path):
    for key, name in (("d", "specsim_draft_tokens_total{position=\""), ("a", "specsim_draft_accepted_total{position=\"")):
        if line.startswith(name):
            pos = int(line[len(name):].split('"')[0])
            counts[key][pos] = counts[key].get(pos, 0.0) + float(line.split()[-1])
alphas, prev = [], 1.0
for i in range(len(counts["d"])):
    d = counts["d"].get(i, 0.0)
    if d <= 0:
        break
    reach = counts["a"].get(i, 0.0) / d
    alphas.append(min(1.0, reach / prev) if prev > 0 else 0.0)
    prev = reach
if not alphas:
    sys.exit(f"{metrics_path}: no draft counters (run the calibration with a drafting policy)")

batch, tps, ctx_axis, tokens = [1, 2, 4, 8], [1, 2, 3, 4, 5], [32, 128, 512], [8, 32, 128, 512]
verify = lambda b, t, c: max(1e5, dec[0] + dec[1] * b * t + dec[2] * b * c + dec[3] * b)
prefill = lambda n: max(1e5, pre[0] + pre[1] * n)
fmt = lambda v: "[" + ", ".join(f"{x:.1f}" for x in v) + "]"
lines = [
    "version = 1", "complete = true", "", "[provenance]",
    f'method = "fitted from a live run\'s step log ({steps_path}: {len(dec_y)} decode/verify, {len(pre_y)} prefill, '
    f'{len(draft)} draft forwards) by scripts/profile-from-steps.py; grids are the fits evaluated"',
    f'fit_verify = "median abs error {mape(dec_x, dec_y, dec) * 100:.1f}%"',
    f'fit_prefill = "median abs error {mape(pre_x, pre_y, pre) * 100:.1f}%"',
    f'acceptance = "measured per position from {metrics_path}"',
    f'date = "{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}"', "",
    "[draft]", f"batch = {fmt(batch)}", f"context = {fmt(ctx_axis)}",
    "ns = [" + ", ".join(fmt([draft_ns] * len(ctx_axis)) for _ in batch) + "]", "",
    "[verify]", f"batch = {fmt(batch)}", f"tokens_per_seq = {fmt(tps)}", f"context = {fmt(ctx_axis)}",
    "ns = [" + ", ".join("[" + ", ".join(fmt([verify(b, t, c) for c in ctx_axis]) for t in tps) + "]" for b in batch) + "]", "",
    "[prefill]", f"tokens = {fmt(tokens)}", f"ns = {fmt([prefill(n) for n in tokens])}", "",
    "[fit.draft]", f"a = {draft_ns:.1f}", "b = 0.0", "c = 0.0", "d = 0.0", "",
    "[fit.verify]", f"a = {dec[0]:.1f}", f"b = {dec[1]:.1f}", f"c = {dec[2]:.3f}", f"d = {dec[3]:.1f}", "",
    "[fit.prefill]", f"a = {pre[0]:.1f}", f"b = {pre[1]:.1f}", "c = 0.0", "d = 0.0", "",
    "[acceptance]", 'kind = "per_position"', "alphas = [" + ", ".join(f"{a:.4f}" for a in alphas) + "]", "",
]
open(out_path, "w").write("\n".join(lines))
print(f"{out_path}: verify a={dec[0] / 1e6:.1f} ms + {dec[1] / 1e6:.2f} ms/token + {dec[2] / 1e3:.2f} µs/ctx + "
      f"{dec[3] / 1e6:.2f} ms/seq; prefill {pre[0] / 1e6:.1f} ms + {pre[1] / 1e6:.2f} ms/token; "
      f"draft {draft_ns / 1e3:.0f} µs; alphas {', '.join(f'{a:.2f}' for a in alphas)}")
