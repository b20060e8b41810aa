#!/usr/bin/env bash
# Runs every cargo-fuzz target of the repository (headend/fuzz, auth/fuzz) for
# MINUTES each and prints a table: target, execs, corpus size, crashes.
#
#   fuzz/run-all.sh MINUTES [TARGET...]
#
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). Each target starts from its committed seed corpus
# (CRATE/fuzz/seeds/TARGET) plus what earlier runs found (CRATE/fuzz/corpus/TARGET,
# not committed); crashes land in CRATE/fuzz/artifacts/TARGET. Targets run one
# after another on one core (-jobs is not used: CPU is shared). All crates
# share one build directory, FUZZ_TARGET_DIR (default target/fuzz), so the
# sanitizer build of common dependencies happens once. Exit status 1 if any
# target crashed.
#
# FUZZ_STABLE=1: no nightly/sanitizer build. The targets are built with the
# stable toolchain into the workspace's target/ (reusing its debug build) and
# run as plain libFuzzer binaries: no ASan and no coverage feedback, so this is
# a random-mutation smoke run (every seed replayed, then mutated), not a real
# campaign. For machines where the sanitizer build is too slow.
set -euo pipefail

minutes=${1:?usage: fuzz/run-all.sh MINUTES [TARGET...]}
shift
only=("$@")
root=$(cd "$(dirname "$0")/.." && pwd)
secs=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60); if (s < 1) s = 1; print s }')
logdir="$root/target/fuzz-logs"
tdir=${FUZZ_TARGET_DIR:-$root/target/fuzz}
case "$tdir" in /*) ;; *) tdir="$PWD/$tdir" ;; esac
mkdir -p "$logdir"

wanted() {
    [ ${#only[@]} -eq 0 ] && return 0
    local t
    for t in "${only[@]}"; do [ "$t" = "$1" ] && return 0; done
    return 1
}

rows=()
failed=0
for crate in headend auth; do
    dir="$root/$crate/fuzz"
    [ -d "$dir" ] || continue
    if [ -n "${FUZZ_STABLE:-}" ]; then
        (cd "$dir" && CARGO_TARGET_DIR="$root/target" cargo +stable build --bins) >&2
    fi
    for target in $(cd "$dir" && sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v -- '-fuzz$'); do
        wanted "$target" || continue
        corpus="$dir/corpus/$target"
        seeds="$dir/seeds/$target"
        artifacts="$dir/artifacts/$target"
        mkdir -p "$corpus" "$artifacts"
        dirs=("$corpus")
        [ -d "$seeds" ] && dirs+=("$seeds")
        log="$logdir/$crate-$target.log"
        echo ">>> $crate/$target for ${secs}s (log $log)" >&2
        before=$(find "$artifacts" -type f | wc -l)
        set +e
        flags=(-max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048
            -artifact_prefix="$artifacts/")
        if [ -n "${FUZZ_STABLE:-}" ]; then
            "$root/target/debug/$target" "${dirs[@]}" "${flags[@]}" >"$log" 2>&1
        else
            (cd "$dir" && cargo +nightly fuzz run --target-dir "$tdir" "$target" "${dirs[@]}" -- \
                "${flags[@]}") >"$log" 2>&1
        fi
        rc=$?
        set -e
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
        size=$(find "$corpus" -type f | wc -l)
        crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
        if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
            crashes="error(rc=$rc)"
        fi
        if [ "$crashes" != 0 ]; then failed=1; fi
        rows+=("$(printf '%-28s %12s %8s %8s' "$crate/$target" "${execs:-?}" "$size" "$crashes")")
    done
done

printf '%-28s %12s %8s %8s\n' target execs corpus crashes
printf '%-28s %12s %8s %8s\n' ---------------------------- ------------ -------- --------
for r in "${rows[@]}"; do echo "$r"; done
exit "$failed"
