#!/usr/bin/env bash
# The README's Slurm recipe, run as written on a real one-node Slurm cluster started here:
#   1. 4 shards as an array job + a merge job that depends on them (afterok, --kill-on-invalid-dep=yes)
#      give a results.csv byte-identical to the unsharded sweep;
#   2. with one shard failing, the merge job is cancelled instead of pending for ever;
#   3. without --cpus-per-task (empty --threads) the shards still run.
# Submitted from a directory other than the repository (the recipe's paths are absolute).
#
#   scripts/slurm-recipe-test.sh [path/to/specsim]
#
# Needs root and Debian's slurm-wlm + munge (installed here with apt-get when missing). Exits 0 with a
# "SKIP:" line when Slurm cannot be installed or started; non-zero when the recipe misbehaves.
set -uo pipefail
SPECSIM=$(readlink -f "${1:-target/debug/specsim}")
REPO=$(cd "$(dirname "$0")/.." && pwd)
skip() { echo "SKIP: $*"; exit 0; }
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$SPECSIM" ] || fail "no specsim binary at $SPECSIM (build it first)"
[ "$(id -u)" = 0 ] || skip "needs root to start slurmctld/slurmd"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge) \
        >/dev/null 2>&1 || skip "could not install slurm-wlm (apt-get failed)"
fi

WORK=$(mktemp -d /tmp/specsim-slurm.XXXXXX)
HOST=$(hostname -s)
CPUS=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=specsimtest
SlurmctldHost=$HOST
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MinJobAge=600
NodeName=$HOST CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 400 /etc/munge/munge.key
STARTED=()
MUNGED_STARTED=0
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- munged 2>/dev/null || munged --force 2>/dev/null || skip "could not start munged"
    MUNGED_STARTED=1
fi
if ! pgrep -x slurmctld >/dev/null; then slurmctld -i 2>/dev/null || skip "could not start slurmctld"; STARTED+=(slurmctld); fi
if ! pgrep -x slurmd >/dev/null; then slurmd 2>/dev/null || skip "could not start slurmd"; STARTED+=(slurmd); fi
cleanup() {
    scancel -u root >/dev/null 2>&1
    for d in "${STARTED[@]}"; do pid=$(cat /run/$d.pid 2>/dev/null) && kill "$pid" 2>/dev/null; done
    if [ "$MUNGED_STARTED" = 1 ]; then
        pid=$(cat /run/munge/munged.pid 2>/dev/null) && kill "$pid" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed' && break; sleep 1; done
sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed' || { scontrol update nodename="$HOST" state=resume >/dev/null 2>&1; sleep 2; }
sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed' || skip "the Slurm node did not come up ($(sinfo -h -o %T 2>&1))"

# A small 8-cell sweep; the scenario lives in the work directory and is named by absolute path.
sed -e 's/^requests = 2000/requests = 300/' "$REPO/scenarios/quickstart.toml" > "$WORK/s.toml"
cat >> "$WORK/s.toml" <<'EOF'

[sweep]
"trace.synthetic.rate" = [5.0, 20.0]
"cluster.replicas" = [1, 2]
policy = [{ kind = "none" }, { kind = "specserve" }]
EOF
"$SPECSIM" sweep "$WORK/s.toml" --out "$WORK/unsharded" --quiet || fail "unsharded sweep"

# The recipe, as the README writes it (REPO/RESULTS filled in, 4 shards, no --cpus-per-task).
recipe() { # $1: results dir, $2: extra sweep flag for shard 2 (to make it fail)
cat > "$WORK/sweep.sbatch" <<EOF
#!/bin/bash
#SBATCH --job-name=specsim-sweep --array=0-3 --time=00:10:00
RESULTS=$1
EXTRA=""
[ "\${SLURM_ARRAY_TASK_ID}" = 2 ] && EXTRA="$2"
"$SPECSIM" sweep "$WORK/s.toml" --shard \${SLURM_ARRAY_TASK_ID}/4 \$EXTRA \\
    --threads "\${SLURM_CPUS_PER_TASK:-}" --out "\$RESULTS/shard-\${SLURM_ARRAY_TASK_ID}" --quiet
EOF
}
wait_gone() { # $1: job id
    for _ in $(seq 240); do [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0; sleep 1; done
    return 1
}
cd /  # not the repository: the recipe's paths must not depend on it

recipe "$WORK/ok" ""
jid=$(sbatch --parsable --output="$WORK/ok-%a.log" "$WORK/sweep.sbatch") || fail "sbatch"
mid=$(sbatch --parsable --output="$WORK/merge-ok.log" --dependency=afterok:${jid} --kill-on-invalid-dep=yes \
    --wrap "'$SPECSIM' merge $WORK/ok/shard-* --out $WORK/ok/all") || fail "sbatch merge"
wait_gone "$mid" || fail "merge job still queued after 4 minutes: $(squeue -j "$mid" 2>&1)"
cmp -s "$WORK/unsharded/results.csv" "$WORK/ok/all/results.csv" \
    || fail "merged table differs from the unsharded sweep ($(cat "$WORK"/ok-*.log "$WORK/merge-ok.log" 2>/dev/null | tail -5))"
echo "ok: 4 shards + merge under Slurm = the unsharded sweep, byte for byte"

recipe "$WORK/bad" "--set no.such.key=1"
jid=$(sbatch --parsable --output="$WORK/bad-%a.log" "$WORK/sweep.sbatch") || fail "sbatch"
mid=$(sbatch --parsable --output="$WORK/merge-bad.log" --dependency=afterok:${jid} --kill-on-invalid-dep=yes \
    --wrap "'$SPECSIM' merge $WORK/bad/shard-* --out $WORK/bad/all") || fail "sbatch merge"
wait_gone "$mid" || fail "with a failed shard the merge job stays pending: $(squeue -j "$mid" -o '%T %r' 2>&1)"
[ ! -e "$WORK/bad/all/results.csv" ] && [ ! -e "$WORK/merge-bad.log" ] \
    || fail "the merge job ran despite a failed shard"
grep -q "unknown field" "$WORK"/bad-2.log || fail "shard 2 did not fail as planned"
echo "ok: a failed shard cancels the merge job (no DependencyNeverSatisfied)"
echo "slurm recipe: 2 passed, 0 failed"
