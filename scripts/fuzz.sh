#!/usr/bin/env bash
# Fuzzes everything that parses outside input, each target for a fixed time budget.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET…]     # default: 60 s, every target in fuzz/fuzz_targets
#
# Exits non-zero when a target failed to build or found a crash, and lists the inputs libFuzzer saved
# (fuzz/artifacts/<target>/). Fix the bug, then move the input into fuzz/regressions/<target>/ so that the
# crate's ordinary `fuzz_regressions` test replays it on every `make test`.
#
# Environment:
#   FUZZ_SANITIZER  address (default) | none. There is no nightly toolchain here: RUSTC_BOOTSTRAP=1 lets
#                   stable accept the -Z flags cargo-fuzz passes (-Zsanitizer=address). `none` still
#                   fuzzes with coverage, debug assertions and overflow checks, only without ASan.
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-seed=1".
#   FUZZ_SKIP_BUILD set to run the binaries already in fuzz/target as they are.
set -euo pipefail

cd "$(dirname "$0")/.."
budget=${1:-60}
shift || true
sanitizer=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

# The longest input worth trying per target: a real message, form, file or list is far smaller, and a
# bound keeps each execution fast.
max_len() {
    case $1 in
        media_stream | webhook_form) echo 4096 ;;
        twiml | config_toml) echo 8192 ;;
        flow_yaml | contacts_csv) echo 16384 ;;
        wav) echo 65536 ;;
        *) echo 4096 ;;
    esac
}

# Build every target once, up front: a build error stops here, and the runs below execute the binaries
# directly, so that nothing is rebuilt (from a tree that may have changed) between one target and the
# next.
if [ -z "${FUZZ_SKIP_BUILD:-}" ]; then
    echo "== building ${targets[*]} (sanitizer $sanitizer)"
    for target in "${targets[@]}"; do
        (cd fuzz && cargo fuzz build --debug-assertions --sanitizer "$sanitizer" "$target")
    done
fi
bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release

mkdir -p fuzz/logs
started=$(mktemp)
trap 'rm -f "$started"' EXIT
failed=()
artifacts=()
for target in "${targets[@]}"; do
    echo "== $target: ${budget}s, sanitizer $sanitizer"
    # libFuzzer adds new inputs to the first corpus directory only: the working corpus (git-ignored),
    # then the committed seeds and regressions, which are read but never written.
    corpora=("fuzz/corpus/$target")
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    for extra in "fuzz/seeds/$target" "fuzz/regressions/$target"; do
        [ -d "$extra" ] && corpora+=("$extra")
    done
    log="fuzz/logs/$target.log"
    status=0
    # What `cargo fuzz run` would run, with the same ASan setting.
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0} "$bin_dir/$target" "${corpora[@]}" \
        -artifact_prefix="fuzz/artifacts/$target/" \
        -max_total_time="$budget" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -max_len="$(max_len "$target")" -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | awk '{print $2}' || true)
    new=$(find "fuzz/artifacts/$target" -type f -newer "$started" 2>/dev/null || true)
    if [ "$status" -ne 0 ] || [ -n "$new" ]; then
        echo "   FAILED (exit $status), log: $log"
        grep -m3 -A1 -E 'panicked at|^==[0-9]+== ?ERROR|^error' "$log" | sed 's/^/   /' || true
        failed+=("$target")
    else
        echo "   ok: ${execs} execs (${rate:-?}/s), corpus $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
    fi
    for f in $new; do
        echo "   artifact: $f"
        artifacts+=("$f")
    done
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]}"
    if [ ${#artifacts[@]} -gt 0 ]; then
        echo "crash inputs (replay: $bin_dir/TARGET ARTIFACT):"
        printf '  %s\n' "${artifacts[@]}"
    fi
    exit 1
fi
echo "fuzzing: ${#targets[@]} target(s), ${budget}s each, no crash"
