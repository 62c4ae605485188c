# Paddock's entry points. `just test` is what CI runs; `just run` boots a demo.

set shell := ["bash", "-euo", "pipefail", "-c"]

export PADDOCK_CACHE := env_var_or_default("PADDOCK_CACHE", env_var("HOME") + "/.cache/paddock")
static_dir := justfile_directory() + "/target/static/x86_64-unknown-linux-gnu/release"
# The test image's binaries: the product's, but paddock-init with the test probes.
test_static_dir := justfile_directory() + "/target/static-test"
# What must be static: the image's binaries, and the test kit that runs
# inside the test suite's L1 VM.
static_bins := "--bin paddock-vmm --bin paddock-agent --bin paddock-init --bin paddock-image --bin paddock --bin paddock-testkit"

# List the recipes.
default:
    @just --list

# Install the Debian packages the build and the tests need (idempotent).
deps:
    ./scripts/install-deps.sh

# Build the workspace kernel (cached by config + source version); prints its directory.
guest-kernel: deps
    @guest-kernel/build.sh

# Fetch the harness's L1 kernel and KVM modules (cached by version); prints its directory.
l1-kernel: deps
    @tests/l1-kernel.sh

# Build (or find cached) a workspace template; prints the image path.
template recipe="image-build/templates/default.recipe": deps
    @image-build/build-template.sh {{recipe}}

# Fetch the appliance's host kernel, Debian's generic one (cached by version); prints its directory.
host-kernel: deps
    @image-build/host-kernel.sh

# Build the appliance image into target/image (add `demo` for one that boots a demo workspace).
image variant="": deps static
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_GUEST_KERNEL=$(guest-kernel/build.sh)
    export PADDOCK_TEMPLATE=$(image-build/build-template.sh image-build/templates/default.recipe)
    export PADDOCK_HOST_KERNEL=$(image-build/host-kernel.sh)
    export PADDOCK_STATIC_BIN={{static_dir}}
    if [ "{{variant}}" = demo ]; then
        image-build/build-image.sh target/image-demo --esp-config firmware/demo-config.json
    else
        image-build/build-image.sh target/image
    fi

# A signed update bundle of a freshly built image (docs/updates.md):
# target/image/paddock-VERSION.update, signed with PADDOCK_UPDATE_KEY (or the
# development key the image build made). Install: paddock system update FILE.
update-bundle: (image "")
    #!/usr/bin/env bash
    set -euo pipefail
    version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
    key=${PADDOCK_UPDATE_KEY:-$PADDOCK_CACHE/update-key/development.pk8}
    {{static_dir}}/paddock-image bundle --uki target/image/paddock.efi \
        --template "$(image-build/build-template.sh image-build/templates/default.recipe)" \
        --pcr-signature target/image/pcr-signature.json \
        --version "$version" --key "$key" --out "target/image/paddock-$version.update"

# List everything in a built image and check it holds no shell or interpreter.
image-list img="target/image/paddock.img": static
    {{static_dir}}/paddock-image list {{img}} --check-no-shell

# Static (static-pie) binaries that run in any initramfs, host or guest:
# the product's, and the test kit the nested tests run inside their L1 (the
# benchmarks run on the build machine: `cargo run`, not these).
static:
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
        --target x86_64-unknown-linux-gnu --target-dir target/static {{static_bins}}

# The binaries of the test image (docs/appliance.md): the product's, with
# paddock-init built again with the test suite's probes. Both builds name
# the same binaries, so cargo resolves the same features for every shared
# dependency and only the crates the probes touch are built twice; the
# product build runs last (cargo finds it fresh and puts its binaries
# back), so target/static keeps the binaries without the probes.
static-test: static
    #!/usr/bin/env bash
    set -euo pipefail
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
        --target x86_64-unknown-linux-gnu --target-dir target/static {{static_bins}} \
        --features paddock-init/test-probes
    mkdir -p {{test_static_dir}}
    for b in {{static_dir}}/*; do
        if [ -f "$b" ] && [ -x "$b" ]; then cp -f "$b" {{test_static_dir}}/; fi
    done
    {{just_executable()}} static
    {{static_dir}}/paddock-init build-info | grep -qx 'test-probes no'
    {{test_static_dir}}/paddock-init build-info | grep -qx 'test-probes yes'

# Install E2B's Python SDK (the pinned versions in scripts/e2b-sdk-versions) into the cache; prints the newest's python.
e2b-sdk:
    @scripts/e2b-sdk.sh

# Install schemathesis (pinned, from PyPI) into the cache; prints its `st` path.
schemathesis:
    @scripts/schemathesis.sh

# Build the web console into console/dist (committed: the API process embeds it).
console:
    console/build.sh

# Formatting, lints and unit tests (and the OpenAPI document against the server): no KVM needed.
check:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo fmt --all -- --check
    # The console's committed build is what its sources and the OpenAPI document give.
    console/build.sh --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo clippy -p paddock-init --all-targets --features test-probes --locked -- -D warnings
    cargo clippy -p paddock-control --all-targets --features test-probes --locked -- -D warnings
    cargo test --workspace --lib --bins --locked
    cargo test -p paddock-init --lib --features test-probes --locked
    cargo test -p paddock-control --lib --features test-probes --locked
    export PADDOCK_SCHEMATHESIS=$(scripts/schemathesis.sh)
    export PADDOCK_E2B_MATRIX=$(scripts/e2b-sdk.sh matrix)
    # Our Python SDK: its offline tests, and its models and routes against docs/openapi.yaml.
    "$(scripts/python-sdk.sh)" -m unittest discover -s sdk/python/tests -p 'test_*.py'
    # The integration tests. schemathesis (the OpenAPI test) mostly waits on
    # the server, about half a core for three minutes, so it runs beside
    # the others rather than after them.
    tests="-p paddock-vmm -p paddock-agent-client -p paddock-proto -p paddock-init -p paddock-image -p paddock-tpm -p paddock-api-types --tests --locked"
    cargo test $tests --no-run
    openapi=$(cargo test -p paddock-init --test openapi --locked --no-run 2>&1 \
        | sed -n 's/.*Executable tests\/openapi\.rs (\(.*\))$/\1/p')
    [ -n "$openapi" ] && openapi=$(realpath "$openapi")
    test -x "$openapi" || { echo "check: found no OpenAPI test binary" >&2; exit 1; }
    log=$(mktemp)
    (cd host-init && exec "$openapi") >"$log" 2>&1 &
    beside=$!
    trap 'kill $beside 2>/dev/null || true; rm -f "$log"' EXIT
    cargo test $tests -- --skip the_openapi_document_matches_the_server
    status=0
    wait $beside || status=$?
    echo "---- the OpenAPI test, run beside the others ----"
    cat "$log"
    exit $status

# Coverage instrumentation for libFuzzer on the stable toolchain (no nightly,
# so no sanitizer: panics and overflow checks are what the targets catch).
# Build the fuzz targets: every guest-facing parser and the API request path.
# `profile`: release for campaigns, ci (less optimised, quicker to build) for CI's runs.
fuzz-build profile="release":
    RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares" \
        cargo build --profile {{profile}} --locked --manifest-path fuzz/Cargo.toml \
        --target x86_64-unknown-linux-gnu --target-dir target/fuzz --bins

# `just fuzz virtio_vsock seconds 3600` is a longer campaign on one target.
# Fuzz one target or all, for N runs (CI: all, 20000 each) or N seconds.
fuzz target="all" mode="runs" n="20000" profile="release": (fuzz-build profile)
    FUZZ_PROFILE={{profile}} scripts/fuzz.sh {{target}} {{mode}} {{n}}

# Everything CI checks: gates, unit tests, fuzzing, and the VMM booting real guests under KVM.
test: deps
    #!/usr/bin/env bash
    set -euo pipefail
    # The kernels and the template come from the network, a debootstrap and
    # a niced kernel build: made beside the Rust builds, whose serial
    # stretches leave a core idle, and cached for the lines below. If this
    # fails, those lines make them again and say why.
    warm=$(mktemp)
    ( nice -n 10 guest-kernel/build.sh && tests/l1-kernel.sh \
        && image-build/build-template.sh image-build/templates/default.recipe \
        && image-build/host-kernel.sh ) >/dev/null 2>"$warm" &
    warming=$!
    trap 'kill $warming 2>/dev/null || true; rm -f "$warm"' EXIT
    {{just_executable()}} check
    {{just_executable()}} static-test
    {{just_executable()}} fuzz all runs 20000 ci
    wait $warming || { echo "test: making the kernels and the template beside the builds failed:" >&2; cat "$warm" >&2; }
    export PADDOCK_GUEST_KERNEL=$(guest-kernel/build.sh)
    export PADDOCK_L1_KERNEL=$(tests/l1-kernel.sh)
    export PADDOCK_TEMPLATE=$(image-build/build-template.sh image-build/templates/default.recipe)
    export PADDOCK_HOST_KERNEL=$(image-build/host-kernel.sh)
    export PADDOCK_STATIC_BIN={{test_static_dir}}
    export PADDOCK_E2B_MATRIX=$(scripts/e2b-sdk.sh matrix)
    export PADDOCK_MCP_PYTHON=$(scripts/mcp-client.sh)
    export PADDOCK_SDK_PYTHON=$(scripts/python-sdk.sh)
    # The demo image plus the test suite's diagnostics (docs/appliance.md),
    # built beside the nested scenarios, which keep about one core busy.
    log=$(mktemp)
    image-build/build-image.sh target/image-test --esp-config firmware/test-config.json >"$log" 2>&1 &
    imaging=$!
    trap 'kill $imaging 2>/dev/null || true; rm -f "$log" "$warm"' EXIT
    cargo test -p paddock-tests --test vmm_scenarios --test agent_scenarios --test proxy_path --test broker_path --test broker_attacks --locked -- --test-threads=8
    status=0
    wait $imaging || status=$?
    echo "---- the test image, built beside the nested scenarios ----"
    cat "$log"
    [ "$status" = 0 ] || { echo "test: building the test image failed" >&2; exit 1; }
    export PADDOCK_IMAGE_DIR=$PWD/target/image-test
    # Two appliances at a time: each is a whole emulated server on one
    # emulated CPU (firmware/boot-appliance.sh), so two keep both of the
    # build machine's cores busy. Tests start in name order: the lifecycle
    # and network tests, the two longest, are named to start first.
    cargo test -p paddock-tests --test appliance --locked -- --test-threads=2 --skip load::
    # The load test alone: 800 kept-alive clients need the emulated box to
    # answer about 27 requests a second to stay open, which it does on a
    # core of its own but not always beside another appliance (CI, stop 30).
    cargo test -p paddock-tests --test appliance --locked -- --test-threads=1 load::

# Boot the appliance image in QEMU (UEFI + TPM) with a demo workspace; the console is this terminal.
run: (image "demo")
    #!/usr/bin/env bash
    set -euo pipefail
    state=${PADDOCK_RUN_DIR:-$PADDOCK_CACHE/run}
    mkdir -p "$state"
    # A fresh "server disk" each run: first boot, bigger than the image.
    cp target/image-demo/paddock.img "$state/disk.img"
    truncate -s 8G "$state/disk.img"
    echo "The API will be at https://127.0.0.1:8443/ (self-signed; compare the fingerprint on the console)."
    echo "Try: curl -k https://127.0.0.1:8443/v1/health    Quit: Ctrl-A X (QEMU), or power off via QMP at $state/qmp.sock"
    firmware/boot-appliance.sh "$state/disk.img" "$state" --port 8443

# Boot the demo guest straight in the VMM (no appliance) and show its console.
run-vmm: deps static
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_GUEST_KERNEL=$(guest-kernel/build.sh)
    export PADDOCK_L1_KERNEL=$(tests/l1-kernel.sh)
    export PADDOCK_STATIC_BIN={{static_dir}}
    cargo run -q -p paddock-tests --bin paddock-demo --locked

# Boot-time, restore and memory benchmark: paddock-vmm vs QEMU microvm, same kernel and initramfs.
bench-boot runs="10": deps static
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_GUEST_KERNEL=$(guest-kernel/build.sh)
    export PADDOCK_L1_KERNEL=$(tests/l1-kernel.sh)
    export PADDOCK_TEMPLATE=$(image-build/build-template.sh image-build/templates/default.recipe)
    export PADDOCK_STATIC_BIN={{static_dir}}
    # The whole benchmark is one L1 run: its hang guard grows with the runs.
    export PADDOCK_RUN_TIMEOUT_S=${PADDOCK_RUN_TIMEOUT_S:-$((600 + 150 * {{runs}}))}
    PADDOCK_BENCH_RUNS={{runs}} cargo run -q --release -p paddock-tests --bin paddock-bench-boot --locked

# Appliance boot benchmark: power-on to init and to API ready, vs Debian's kernel + busybox initramfs.
bench-appliance runs="3": (image "")
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_HOST_KERNEL=$(image-build/host-kernel.sh)
    export PADDOCK_IMAGE_DIR=$PWD/target/image
    PADDOCK_BENCH_RUNS={{runs}} cargo run -q --release -p paddock-tests --bin paddock-bench-appliance --locked

# The egress proxy's own costs (connections/s, keep-alive requests/s, memory per idle connection) vs direct; needs root.
bench-proxy runs="2000": deps
    cargo build --release --locked -p paddock-init --bin paddock-init
    PADDOCK_INIT_BIN=$PWD/target/release/paddock-init PADDOCK_BENCH_RUNS={{runs}} \
        cargo run -q --release --locked -p paddock-tests --bin paddock-bench-proxy

# The secret broker: HTTPS time to first byte and 32 MiB throughput, direct vs through the proxy
# passed through vs brokered (TLS ended and opened again), HTTP/1.1 and HTTP/2; real confined process.
bench-broker runs="50": deps
    cargo build --release --locked -p paddock-init --bin paddock-init
    PADDOCK_INIT_BIN=$PWD/target/release/paddock-init PADDOCK_BENCH_RUNS={{runs}} \
        cargo run -q --release --locked -p paddock-tests --bin paddock-bench-broker

# The API process's HTTP: requests/s and p50/p99 for a GET and a small exec, new connection each
# and kept alive, against a fake host-init; side by side with the API process as of `base` (a git
# revision; it and this bench are built there once, into ~/.cache/paddock/api-baseline-REV).
bench-api-http runs="4000" base="eb279a3": deps
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release --locked -p paddock-init --bin paddock-init -p paddock-tests --bin paddock-bench-api-http
    rev=$(git rev-parse --short "{{base}}")
    dir=${PADDOCK_CACHE:-$HOME/.cache/paddock}/api-baseline-$rev
    if [ ! -x "$dir/paddock-bench-api-http" ]; then
        src=$(mktemp -d)
        git worktree add --detach "$src" "$rev" >/dev/null
        cp tests/src/bin/bench_api_http.rs "$src/tests/src/bin/"
        if ! grep -q bench-api-http "$src/tests/Cargo.toml"; then
            printf '\n[[bin]]\nname = "paddock-bench-api-http"\npath = "src/bin/bench_api_http.rs"\n' >> "$src/tests/Cargo.toml"
        fi
        (cd "$src" && CARGO_TARGET_DIR="$dir/target" cargo build --release --locked \
            -p paddock-init --bin paddock-init -p paddock-tests --bin paddock-bench-api-http)
        cp "$dir/target/release/paddock-init" "$dir/target/release/paddock-bench-api-http" "$dir/"
        git worktree remove --force "$src"
    fi
    PADDOCK_INIT_BIN=$dir/paddock-init PADDOCK_BENCH_LABEL="before ($rev)" \
        PADDOCK_BENCH_RUNS={{runs}} "$dir/paddock-bench-api-http"
    PADDOCK_INIT_BIN=$PWD/target/release/paddock-init PADDOCK_BENCH_LABEL=now PADDOCK_BENCH_NO_HEADER=1 \
        PADDOCK_BENCH_RUNS={{runs}} target/release/paddock-bench-api-http

# Encrypted vs unencrypted workspace disks (I/O inside a workspace, create and delete), one appliance run.
bench-disk runs="3": deps static-test
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_GUEST_KERNEL=$(guest-kernel/build.sh)
    export PADDOCK_TEMPLATE=$(image-build/build-template.sh image-build/templates/default.recipe)
    export PADDOCK_HOST_KERNEL=$(image-build/host-kernel.sh)
    export PADDOCK_STATIC_BIN={{test_static_dir}}
    # The test image: only it makes the unencrypted peer.
    image-build/build-image.sh target/image-test --esp-config firmware/test-config.json
    export PADDOCK_IMAGE_DIR=$PWD/target/image-test
    PADDOCK_BENCH_RUNS={{runs}} cargo run -q --release -p paddock-tests --bin paddock-bench-disk --locked

# A new sandbox to its first output: E2B's Python SDK (newest pinned) against the native API (curl), one appliance run.
bench-e2b runs="10": deps static-test
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_GUEST_KERNEL=$(guest-kernel/build.sh)
    export PADDOCK_TEMPLATE=$(image-build/build-template.sh image-build/templates/default.recipe)
    export PADDOCK_HOST_KERNEL=$(image-build/host-kernel.sh)
    export PADDOCK_STATIC_BIN={{test_static_dir}}
    image-build/build-image.sh target/image-test --esp-config firmware/test-config.json
    export PADDOCK_IMAGE_DIR=$PWD/target/image-test
    export PADDOCK_E2B_PYTHON=$(scripts/e2b-sdk.sh)
    PADDOCK_BENCH_RUNS={{runs}} cargo run -q --release -p paddock-tests --bin paddock-bench-e2b --locked

# Workspace network paths (direct, proxied HTTP and HTTPS, the NIC's limiter, DNS), one appliance run in a fake internet.
bench-net runs="3": deps static-test
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_GUEST_KERNEL=$(guest-kernel/build.sh)
    export PADDOCK_TEMPLATE=$(image-build/build-template.sh image-build/templates/default.recipe)
    export PADDOCK_HOST_KERNEL=$(image-build/host-kernel.sh)
    export PADDOCK_STATIC_BIN={{test_static_dir}}
    image-build/build-image.sh target/image-test --esp-config firmware/test-config.json
    export PADDOCK_IMAGE_DIR=$PWD/target/image-test
    PADDOCK_BENCH_RUNS={{runs}} cargo run -q --release -p paddock-tests --bin paddock-bench-net --locked

# Workspace API benchmark, template snapshots on vs off: create -> first exec (median, p99), concurrent creates, memory per workspace.
bench-api runs="20" concurrent="4,10": (image "")
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_IMAGE_DIR=$PWD/target/image
    PADDOCK_BENCH_RUNS={{runs}} PADDOCK_BENCH_CONCURRENT={{concurrent}} \
        cargo run -q --release -p paddock-tests --bin paddock-bench-api --locked
