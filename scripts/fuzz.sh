#!/usr/bin/env bash
# Runs the libFuzzer targets built by `just fuzz-build`.
#   scripts/fuzz.sh TARGET|all runs N      a fixed number of iterations (CI)
#   scripts/fuzz.sh TARGET|all seconds N   for a while (a longer campaign)
# Each target starts from its committed seeds in fuzz/corpus/TARGET; what it
# finds goes to target/fuzz/work/TARGET, never into the repository. A crash
# leaves its input in target/fuzz/artifacts/TARGET/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(virtqueue virtio_block virtio_net virtio_vsock agent_protocol api_request tpm_response sni_peek http_requests dns_query e2b_request broker_rules snapshot_state esp_files backup_reader)
which=${1:-all}
mode=${2:-runs}
n=${3:-20000}
case "$mode" in
    runs) limit=(-runs="$n") ;;
    seconds) limit=(-max_total_time="$n") ;;
    *) echo "fuzz.sh: mode must be 'runs' or 'seconds', not '$mode'" >&2; exit 2 ;;
esac
if [ "$which" != all ]; then
    if [[ ! " ${targets[*]} " == *" $which "* ]]; then
        echo "fuzz.sh: unknown target '$which' (have: ${targets[*]})" >&2
        exit 2
    fi
    targets=("$which")
fi
# Built by `just fuzz-build PROFILE` (release, or ci for CI's quick build).
bin=target/fuzz/x86_64-unknown-linux-gnu/${FUZZ_PROFILE:-release}
# One target runs on one core: as many at once as there are cores.
jobs=${FUZZ_JOBS:-$(nproc)}

# Runs target $1 and prints what it did as one block once it ends, so
# targets running side by side do not interleave their lines.
one() {
    local t=$1 work=target/fuzz/work/$1 art=target/fuzz/artifacts/$1 log=target/fuzz/$1.log rc=0
    mkdir -p "$work" "$art" "fuzz/corpus/$t"
    "$bin/$t" "$work" "fuzz/corpus/$t" "${limit[@]}" -max_len=8192 \
        -artifact_prefix="$art/" -print_final_stats=1 > "$log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        { echo "fuzz: $t (${limit[*]})"; tail -n 60 "$log"
          echo "fuzz: $t FAILED (exit $rc); the input that did it is in $art/"; } >&2
        return 1
    fi
    printf 'fuzz: %s (%s)\n%s\n' "$t" "${limit[*]}" \
        "$(grep -E '^(#[0-9]+ +DONE|Done |stat::number_of_executed_units)' "$log" || true)"
}

running=0
failed=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    one "$t" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
exit "$failed"
