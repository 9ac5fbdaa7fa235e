#!/usr/bin/env python3
"""Derives `specsim validate`'s front-end latency and per-step engine overhead from the training runs
(the 14 with per-request data under training/replay_data), globally and leave-one-model-out, and
scores each held-out model with the constants derived without it (docs/VALIDATION.md).

    python3 scripts/validate-overheads.py [../shared/gpu/blis] [target/debug/specsim]

Rule, at the first load stage of every training run that has a light one (the 4 req/s reasoning runs
overloaded the servers and are left out):
- decode residual per token = ((E2E − TTFT) measured − (E2E − TTFT) predicted) / (output_len − 1),
  with output_len the generated count (`ignore_eos`), not the client's re-count;
- step overhead per TP class = max(0, median residual) at zero overheads, then corrected once by the
  median residual left at that value (longer steps batch more requests, so the decode time per token
  grows by more than the overhead), rounded to 10 µs;
- front end = median of (TTFT measured − TTFT predicted) with the step overhead in, rounded to 0.5 ms.
"""
import csv, json, os, statistics as st, subprocess, sys, tempfile

B = sys.argv[1] if len(sys.argv) > 1 else '../shared/gpu/blis'
BIN = sys.argv[2] if len(sys.argv) > 2 else 'target/debug/specsim'
TMP = tempfile.mkdtemp(prefix='validate-overheads-')
RUNS = {f[:-5] for f in os.listdir(B + '/training/replay_data')
        if f.endswith('.json') and not f.endswith('_ground_truth.json')}
CSV_MODEL = {}
EXPS = {}  # experiment -> training run
for r in csv.DictReader(open(B + '/experiments.csv')):
    CSV_MODEL[r['experiment']] = r['model'].split('/')[-1]
    run = r['experiment'] if r['experiment'] in RUNS else r['training_run_twin']
    if run in RUNS:
        EXPS[r['experiment']] = run
for run in RUNS - set(EXPS.values()):
    EXPS[run] = run


def profile(run):
    return json.loads(open(f'{B}/training/default_args/{run}/profile.yaml').read())


def model_of(e):
    return CSV_MODEL.get(e) or profile(EXPS[e])['server']['model_name'].split('/')[-1]


def validate(f_ms, s1_us, sn_us, cache={}):
    key = (f_ms, s1_us, sn_us)
    if key not in cache:
        out = f'{TMP}/{f_ms}_{s1_us}_{sn_us}'
        subprocess.run([BIN, 'validate', B, '--out', out, '--frontend-ms', str(f_ms),
                        '--step-overhead-us', str(s1_us), '--step-overhead-multi-gpu-us', str(sn_us)],
                       check=True, capture_output=True)
        cache[key] = out + '/validation.csv'
    return cache[key]


def rows(path):
    return {(r['experiment'], int(r['stage']), r['metric']): (float(r['measured_ms']), float(r['specsim_ms']))
            for r in csv.DictReader(open(path))}


def residuals(path, exclude=None):
    d, out = rows(path), []
    for e, run in sorted(EXPS.items()):
        if 'reasoning' in run or model_of(e) == exclude:
            continue
        (e2m, e2p), (ttm, ttp) = d[(e, 0, 'e2e_mean')], d[(e, 0, 'ttft_mean')]
        n = profile(run)['data']['shared_prefix']['output_len']
        tp = int(run.split('-tp')[1][0])
        out.append(dict(exp=e, tp=tp, step_us=((e2m - ttm) - (e2p - ttp)) / (n - 1) * 1e3, ttft_ms=ttm - ttp))
    return out


def derive(exclude=None):
    r0 = residuals(validate(0, 0, 0), exclude)
    tp1 = [r['step_us'] for r in r0 if r['tp'] == 1]
    tpn = [r['step_us'] for r in r0 if r['tp'] > 1]
    s1 = round(max(0.0, st.median(tp1)) / 10) * 10 if tp1 else 0
    sn = round(max(0.0, st.median(tpn)) / 10) * 10 if tpn else 0
    if s1 > 0:
        left = [r['step_us'] for r in residuals(validate(0, s1, sn), exclude) if r['tp'] == 1]
        s1 = round(max(0.0, s1 + st.median(left)) / 10) * 10
    r1 = residuals(validate(0, s1, sn), exclude)
    f = round(st.median([r['ttft_ms'] for r in r1]) * 2) / 2
    return f, s1, sn, r0, r1


def apes(path, keep, stage=-1):
    res = {}
    for (e, s, m), (meas, pred) in rows(path).items():
        if s == stage and keep(e) and m in ('e2e_mean', 'ttft_mean', 'itl_mean'):
            res.setdefault(m, []).append(abs(pred - meas) / meas * 100)
    return len(res['e2e_mean']), ' / '.join(f"{st.median(res[k]):.1f}" for k in ('e2e_mean', 'ttft_mean', 'itl_mean'))


f, s1, sn, r0, r1 = derive()
print(f'global: front end {f} ms, step overhead TP 1 {s1} µs, TP ≥ 2 {sn} µs')
for a, b in zip(r0, r1):
    print(f"  {a['exp']:44} TP {a['tp']}  decode residual {a['step_us']:+6.0f} µs/token  "
          f"TTFT residual {b['ttft_ms']:+5.1f} ms")
base, glob = validate(0, 0, 0), validate(f, s1, sn)
print('all experiments, median APE E2E / TTFT / ITL %: before', apes(base, lambda e: True)[1],
      'after', apes(glob, lambda e: True)[1])
for stage, what in ((-1, 'whole run, every experiment of the model'),
                    (0, 'first (light) stage, experiments of the model but the 4 req/s reasoning ones')):
    print(f'\n{what}: median APE % E2E / TTFT / ITL')
    print('| held-out model | experiments | constants without it | 0 / 0 | global | leave-one-model-out |')
    print('|---|---|---|---|---|---|')
    for m in sorted({model_of(r['exp']) for r in r0}):
        fm, s1m, snm, _, _ = derive(m)
        keep = lambda e, m=m: model_of(e).lower() == m.lower() and (stage == -1 or 'reasoning' not in e)
        n, before = apes(base, keep, stage)
        print(f"| {m} | {n} | {fm} ms, {s1m} µs, {snm} µs | {before} | {apes(glob, keep, stage)[1]} | "
              f"{apes(validate(fm, s1m, snm), keep, stage)[1]} |")
