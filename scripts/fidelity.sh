#!/usr/bin/env bash
# The fidelity study of docs/FIDELITY.md: for each workload and load, predict with `specsim run`, then
# measure each policy by replaying the same workload against a live `specsim serve`, and compare.
#
#   scripts/fidelity.sh CAPACITY [WORKLOAD...]      # CAPACITY in requests/s; loads are 50 % and 90 % of it
#
# WORKLOAD: poisson, gamma, azure-conv (default: all three). Results under out/fidelity/<workload>-<load>/
# ({pred,meas,compare}), with each live run's serve log and per-forward step log (measured beside
# predicted forward time) as <workload>-<load>.<policy>.{serve.log,steps.csv}. Needs models/ (scripts/fetch-models.sh)
# and a release build (cargo build --release). Environment: SPECSIM_BIN (default target/release/specsim),
# PORT (default 8765), LOADS (default "50 90"), POLICIES (default "none static-4 specserve").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SPECSIM_BIN:-target/release/specsim}
PROFILE=profiles/qwen2.5-coder-0.5b-1.5b.cpu.toml
PORT=${PORT:-8765}
LOADS=${LOADS:-"50 90"}
POLICIES=${POLICIES:-"none static-4 specserve"}
[ $# -ge 1 ] || { sed -n 2,11p "$0"; exit 2; }
C=$1; shift
WORKLOADS=${*:-poisson gamma azure-conv}
[ -x "$BIN" ] || { echo "fidelity: $BIN not found: run cargo build --release" >&2; exit 1; }
for f in models/target.gguf models/draft.gguf "$PROFILE"; do
  [ -f "$f" ] || { echo "fidelity: $f not found (scripts/fetch-models.sh, specsim calibrate)" >&2; exit 1; }
done

SERVE_PID=
stop_server() { if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=; fi; }
trap stop_server EXIT

for W in $WORKLOADS; do
  SCEN=scenarios/fidelity/$W.toml
  [ -f "$SCEN" ] || { echo "fidelity: no scenario $SCEN" >&2; exit 1; }
  TPOT=$(sed -n 's/^tpot_s *= *\([0-9.]*\).*/\1/p' "$SCEN")
  for LOAD in $LOADS; do
    R=$(python3 -c "print(round($C * $LOAD / 100, 4))")
    case $W in
      azure-conv) SET="trace.target_rate=$R" ;;
      *) SET="trace.synthetic.rate=$R" ;;
    esac
    OUT=out/fidelity/$W-$LOAD
    rm -rf "$OUT"
    echo "== $W at $LOAD % of $C req/s: rate $R"
    "$BIN" run "$SCEN" --set "$SET" --out "$OUT/pred" -q
    for P in $POLICIES; do
      "$BIN" serve --target models/target.gguf --draft models/draft.gguf --policy "$P" --profile "$PROFILE" \
        --max-num-seqs 8 --kv-tokens 32768 --tpot-slo "$TPOT" --port "$PORT" --step-log "$OUT.$P.steps.csv" > "$OUT.$P.serve.log" 2>&1 &
      SERVE_PID=$!
      for _ in $(seq 240); do
        curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
        kill -0 "$SERVE_PID" 2>/dev/null || { echo "fidelity: serve exited, see $OUT.$P.serve.log" >&2; exit 1; }
        sleep 0.5
      done
      "$BIN" replay "$SCEN" --set "$SET" --endpoint "http://127.0.0.1:$PORT" --policy-label "$P" \
        --temperature 0 --out "$OUT/meas" -q
      curl -s "http://127.0.0.1:$PORT/metrics" > "$OUT/meas/$P/metrics.txt" || true
      stop_server
    done
    "$BIN" compare "$OUT/pred" "$OUT/meas" --out "$OUT/compare"
  done
done
