# Paddock's entry points. `just test` is what CI runs; `just run` boots a demo.

set shell := ["bash", "-euo", "pipefail", "-c"]

export PADDOCK_CACHE := env_var_or_default("PADDOCK_CACHE", env_var("HOME") + "/.cache/paddock")
static_dir := justfile_directory() + "/target/static/x86_64-unknown-linux-gnu/release"

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

# Static (static-pie) binaries that run in any initramfs, host or guest.
static:
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
        --target x86_64-unknown-linux-gnu --target-dir target/static \
        -p paddock-vmm -p paddock-agent -p paddock-tests --bins

# Formatting, lints and unit tests: no KVM needed.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo test --workspace --lib --bins --locked
    cargo test -p paddock-vmm -p paddock-agent-client -p paddock-proto --tests --locked

# Everything CI checks: gates, unit tests, and the VMM booting real guests under KVM.
test: deps check static
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_GUEST_KERNEL=$(guest-kernel/build.sh)
    export PADDOCK_L1_KERNEL=$(tests/l1-kernel.sh)
    export PADDOCK_TEMPLATE=$(image-build/build-template.sh image-build/templates/default.recipe)
    export PADDOCK_STATIC_BIN={{static_dir}}
    cargo test -p paddock-tests --test vmm_scenarios --test agent_scenarios --locked -- --test-threads=8

# Boot the demo guest in the VMM and show its console (nested KVM in QEMU here).
run: deps static
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_GUEST_KERNEL=$(guest-kernel/build.sh)
    export PADDOCK_L1_KERNEL=$(tests/l1-kernel.sh)
    export PADDOCK_STATIC_BIN={{static_dir}}
    cargo run -q -p paddock-tests --bin paddock-demo --locked

# Boot-time and memory benchmark: paddock-vmm vs QEMU microvm, same kernel and initramfs.
bench-boot runs="10": deps static
    #!/usr/bin/env bash
    set -euo pipefail
    export PADDOCK_GUEST_KERNEL=$(guest-kernel/build.sh)
    export PADDOCK_L1_KERNEL=$(tests/l1-kernel.sh)
    export PADDOCK_TEMPLATE=$(image-build/build-template.sh image-build/templates/default.recipe)
    export PADDOCK_STATIC_BIN={{static_dir}}
    PADDOCK_BENCH_RUNS={{runs}} cargo run -q --release -p paddock-tests --bin paddock-bench-boot --locked
