#!/usr/bin/env bash
# Runs the libFuzzer targets built by `just fuzz-build`.
#   scripts/fuzz.sh TARGET|all runs N      a fixed number of iterations (CI)
#   scripts/fuzz.sh TARGET|all seconds N   for a while (a longer campaign)
# Each target starts from its committed seeds in fuzz/corpus/TARGET; what it
# finds goes to target/fuzz/work/TARGET, never into the repository. A crash
# leaves its input in target/fuzz/artifacts/TARGET/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(virtqueue virtio_block virtio_net virtio_vsock agent_protocol api_request tpm_response sni_peek http_requests dns_query e2b_request broker_rules snapshot_state)
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
bin=target/fuzz/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
    work=target/fuzz/work/$t
    art=target/fuzz/artifacts/$t
    mkdir -p "$work" "$art" "fuzz/corpus/$t"
    echo "fuzz: $t (${limit[*]})"
    log=target/fuzz/$t.log
    rc=0
    "$bin/$t" "$work" "fuzz/corpus/$t" "${limit[@]}" -max_len=8192 \
        -artifact_prefix="$art/" -print_final_stats=1 > "$log" 2>&1 || rc=$?
    grep -E '^(#[0-9]+ +DONE|Done |stat::number_of_executed_units)' "$log" || true
    if [ "$rc" != 0 ]; then
        tail -n 60 "$log" >&2
        echo "fuzz: $t FAILED (exit $rc); the input that did it is in $art/" >&2
        exit 1
    fi
done
