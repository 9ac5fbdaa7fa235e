#!/usr/bin/env bash
# The fidelity study of docs/FIDELITY.md, replicated: for each workload, load and policy, run the live
# engine REPLICATES times (interleaved: every cell's replicate 1, then every cell's replicate 2, ... so
# that the machine's drift hits all cells alike), then put each cell together with `specsim fidelity`
# (prediction over simulator seeds, intervals, verdicts, error terms) and summarise all cells.
#
#   scripts/fidelity.sh CAPACITY            # CAPACITY in requests/s; loads are LOADS % of it
#
# The fast configuration (SmolLM2-135M with n-gram drafting, short requests: a cell's 300 requests in
# minutes; `scripts/fetch-models.sh --smollm` writes models/smollm2-q8.gguf):
#   WORKLOADS="poisson-short gamma-short azure-conv-short" POLICIES="none static-2 specserve" \
#   TARGET=models/smollm2-q8.gguf PROFILE=profiles/smollm2-135m-ngram.cpu.toml MODE=in-process \
#   TTFT_SLO=1.0 TPOT_SLO=0.05 scripts/fidelity.sh CAPACITY
#
# Resumes: a finished live run leaves DIR/.done and is not redone; a run interrupted half-way is
# redone from its start. Cells are re-put-together every time (seconds). A live run that fails (the
# server does not start, dies, or requests fail) is recorded in OUT/failures.log and in its cell's
# report as left out — never averaged in — and is retried on the next invocation.
#
# Environment (defaults in brackets):
#   WORKLOADS   [poisson gamma azure-conv]     scenarios/fidelity/<workload>.toml
#   LOADS       [50 90]                        percent of CAPACITY
#   POLICIES    [none static-4 specserve]      names as in the scenarios
#   REPLICATES  [3]    REQUESTS [300]    SEEDS [5] (simulator seeds)    WARMUP [10] (requests trimmed)
#   TARGET      [models/draft.gguf]            the 0.5B model as the target ...
#   DRAFT       [ngram]                        ... with n-gram drafting (or a draft GGUF: the slow
#                                              1.5B/0.5B pair is TARGET=models/target.gguf DRAFT=models/draft.gguf
#                                              PROFILE=profiles/qwen2.5-coder-0.5b-1.5b.cpu.toml)
#   PROFILE     [profiles/qwen2.5-coder-0.5b-ngram.cpu.toml]   `specsim calibrate` of the same pair, here
#   TTFT_SLO, TPOT_SLO  [the scenario's]       SLOs in seconds (scale them to the pair's speed)
#   MODE        [http]                         http: `specsim serve` + `specsim replay --endpoint`;
#                                              in-process: `specsim replay --in-process` (no HTTP);
#                                              both: each run over HTTP and then in process (under
#                                              rep<r>/inproc/<policy>); cells report the serving
#                                              overhead per request (HTTP - in process)
#   THREADS [all cores]                        compute threads of the engine
#   OUT [out/fidelity]  SPECSIM_BIN [target/release/specsim]  PORT [8765]
#   FAKE_STEP_MS [unset]                       a dry run of the whole pipeline without models: the engine
#                                              over the scripted echo backend, each forward this long
#   FAKE_ACCEPT [3,0,2,1]                      with FAKE_STEP_MS: drafts accepted per verification,
#                                              cycled per sequence (serve --fake-accept)
#   NOISE_FLAGS [unset]                        extra `replay` noise flags, e.g. --noise-probe-reps 5
#
# Layout: OUT/<workload>-<load>/rep<r>/<policy>/ (requests.csv, replay.json, steps.csv, metrics.txt,
# noise.json, serve.log; steps.seqs.csv: each sequence's drafted/accepted per verification) and
# OUT/<workload>-<load>/cell/<policy>/cell.{json,md}; OUT/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SPECSIM_BIN:-target/release/specsim}
WORKLOADS=${WORKLOADS:-"poisson gamma azure-conv"}
LOADS=${LOADS:-"50 90"}
POLICIES=${POLICIES:-"none static-4 specserve"}
REPLICATES=${REPLICATES:-3}
REQUESTS=${REQUESTS:-300}
SEEDS=${SEEDS:-5}
WARMUP=${WARMUP:-10}
TARGET=${TARGET:-models/draft.gguf}
DRAFT=${DRAFT:-ngram}
PROFILE=${PROFILE:-profiles/qwen2.5-coder-0.5b-ngram.cpu.toml}
MODE=${MODE:-http}
OUT=${OUT:-out/fidelity}
PORT=${PORT:-8765}
[ $# -ge 1 ] || { sed -n 2,47p "$0"; exit 2; }
C=$1
[ -x "$BIN" ] || { echo "fidelity: $BIN not found: run cargo build --release" >&2; exit 1; }
[ -z "${FAKE_STEP_MS:-}" ] || TARGET=$PROFILE
for f in "$TARGET" "$PROFILE"; do
  [ -f "$f" ] || { echo "fidelity: $f not found (scripts/fetch-models.sh, specsim calibrate)" >&2; exit 1; }
done
case $MODE in http | in-process | both) ;; *) echo "fidelity: MODE must be http, in-process or both" >&2; exit 2 ;; esac
mkdir -p "$OUT"
ROOT=$(pwd)

# The engine's flags, shared by `serve` and `replay --in-process`.
engine_flags() { # POLICY TPOT
  local f=(--policy "$1" --profile "$PROFILE" --max-num-seqs 8 --kv-tokens 32768 --tpot-slo "$2")
  if [ -n "${FAKE_STEP_MS:-}" ]; then f+=(--fake --fake-step-ms "$FAKE_STEP_MS" --fake-accept "${FAKE_ACCEPT:-3,0,2,1}"); echo "${f[@]}"; return; fi
  f+=(--target "$TARGET")
  [ -z "${THREADS:-}" ] || f+=(--threads "$THREADS")
  if [ "$DRAFT" = ngram ]; then f+=(--ngram); else f+=(--draft "$DRAFT"); fi
  echo "${f[@]}"
}

# The scenario overrides of a workload at a load: rate, request count, profile, SLOs.
scenario_sets() { # WORKLOAD RATE
  local s=() prof; case $PROFILE in /*) prof=$PROFILE ;; *) prof="$ROOT/$PROFILE" ;; esac
  case $1 in
    azure-conv*) s+=(--set "trace.target_rate=$2" --set "trace.limit=$REQUESTS") ;;
    *) s+=(--set "trace.synthetic.rate=$2" --set "trace.synthetic.requests=$REQUESTS") ;;
  esac
  s+=(--set "cost.path=$prof" --set "acceptance.path=$prof")
  [ -z "${TTFT_SLO:-}" ] || s+=(--set "slo.ttft_s=$TTFT_SLO")
  [ -z "${TPOT_SLO:-}" ] || s+=(--set "slo.tpot_s=$TPOT_SLO")
  echo "${s[@]}"
}

SERVE_PID=
stop_server() { if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=; fi; }
trap stop_server EXIT

# One live run into DIR over PATH (http or in-process); returns non-zero (after recording why) when
# it could not produce results.
live_run() { # WORKLOAD LOAD REP POLICY DIR PATH
  local W=$1 L=$2 P=$4 dir=$5 path=$6 scen=scenarios/fidelity/$1.toml R tpot sets noise
  R=$(python3 -c "print(round($C * $L / 100, 4))")
  tpot=${TPOT_SLO:-$(sed -n 's/^tpot_s *= *\([0-9.]*\).*/\1/p' "$scen")}
  read -r -a sets <<< "$(scenario_sets "$W" "$R")"
  read -r -a eng <<< "$(engine_flags "$P" "$tpot")"
  read -r -a noise <<< "${NOISE_FLAGS:-}"
  rm -rf "$dir"; mkdir -p "$dir"
  local common=("$scen" "${sets[@]}" --policy-label "$P" --temperature 0 --out "$(dirname "$dir")" --noise "${noise[@]}" --allow-failures -q)
  if [ "$path" = in-process ]; then
    "$BIN" replay "${common[@]}" --in-process "${eng[@]}" > "$dir/replay.log" 2>&1 || return 1
  else
    "$BIN" serve "${eng[@]}" --port "$PORT" --step-log "$dir/steps.csv" > "$dir/serve.log" 2>&1 &
    SERVE_PID=$!
    local up=0
    for _ in $(seq 600); do
      if curl -sf "http://127.0.0.1:$PORT/health" > /dev/null; then up=1; break; fi
      kill -0 "$SERVE_PID" 2>/dev/null || break
      sleep 0.5
    done
    if [ $up = 0 ]; then echo "server did not start (see $dir/serve.log)" > "$dir/FAILED"; stop_server; return 1; fi
    "$BIN" replay "${common[@]}" --endpoint "http://127.0.0.1:$PORT" > "$dir/replay.log" 2>&1 || { stop_server; return 1; }
    curl -sf "http://127.0.0.1:$PORT/metrics" > "$dir/metrics.txt" || rm -f "$dir/metrics.txt"
    kill -0 "$SERVE_PID" 2>/dev/null || { echo "server exited during the run" > "$dir/FAILED"; SERVE_PID=; return 1; }
    stop_server
  fi
}

# Live runs, replicate-major.
TOTAL=0; for _ in $(seq "$REPLICATES"); do for _ in $WORKLOADS; do for _ in $LOADS; do for _ in $POLICIES; do TOTAL=$((TOTAL + 1)); done; done; done; done
N=0; START=$(date +%s); RAN=0
for REP in $(seq "$REPLICATES"); do
  for W in $WORKLOADS; do
    [ -f "scenarios/fidelity/$W.toml" ] || { echo "fidelity: no scenario scenarios/fidelity/$W.toml" >&2; exit 1; }
    for L in $LOADS; do
      for P in $POLICIES; do
        N=$((N + 1))
        DIR=$OUT/$W-$L/rep$REP/$P
        if [ -f "$DIR/.done" ]; then echo "[$N/$TOTAL] $W-$L rep$REP $P: done earlier"; continue; fi
        ELAPSED=$(( $(date +%s) - START ))
        ETA=""; [ $RAN -gt 0 ] && ETA=", about $(( ELAPSED / RAN * (TOTAL - N + 1) / 60 )) min left"
        echo "[$N/$TOTAL] $W-$L rep$REP $P: running (elapsed $((ELAPSED / 60)) min$ETA)"
        # MODE=both: the HTTP run, then the same run in process beside it.
        RUNS=("$DIR $MODE"); [ "$MODE" = both ] && RUNS=("$DIR http" "$OUT/$W-$L/rep$REP/inproc/$P in-process")
        OK=1
        for RUN in "${RUNS[@]}"; do
          read -r D KIND <<< "$RUN"
          if live_run "$W" "$L" "$REP" "$P" "$D" "$KIND"; then
            python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["flags"]; f and print("    noise flagged: " + "; ".join(f))' "$D/noise.json" 2>/dev/null || true
          else
            OK=0
            echo "$(date -u +%FT%TZ) $W-$L rep$REP $P ($KIND): failed ($(cat "$D/FAILED" 2>/dev/null || tail -1 "$D/replay.log" 2>/dev/null))" | tee -a "$OUT/failures.log"
          fi
        done
        [ $OK = 0 ] || touch "$DIR/.done"
        RAN=$((RAN + 1))
      done
    done
  done
done

# Cells.
for W in $WORKLOADS; do
  for L in $LOADS; do
    R=$(python3 -c "print(round($C * $L / 100, 4))")
    read -r -a sets <<< "$(scenario_sets "$W" "$R")"
    for P in $POLICIES; do
      reps=(); local_reps=()
      for REP in $(seq "$REPLICATES"); do reps+=("$OUT/$W-$L/rep$REP/$P"); done
      if [ "$MODE" = both ]; then
        local_reps=(--in-process)
        for REP in $(seq "$REPLICATES"); do local_reps+=("$OUT/$W-$L/rep$REP/inproc/$P"); done
      fi
      echo "== cell $W-$L $P"
      "$BIN" fidelity "scenarios/fidelity/$W.toml" "${sets[@]}" --policy "$P" --measured "${reps[@]}" "${local_reps[@]}" \
        --seeds "$SEEDS" --warmup "$WARMUP" --out "$OUT/$W-$L/cell/$P" || echo "fidelity: cell $W-$L $P failed" | tee -a "$OUT/failures.log"
    done
  done
done
python3 scripts/fidelity-summary.py "$OUT" | tee "$OUT/summary.md"
