#!/usr/bin/env bash
# Whole programs side by side: benches/compare/ built once per global allocator, then
#   (a) instruction counts under valgrind's callgrind (exact and repeatable, even on a busy
#       machine) at a reduced scale, and
#   (b) wall time, CPU time (user + system) and peak RSS, each run a whole process, the
#       variants of a workload taken in turn in every round (A B, B A, A B, ...), the median
#       over the rounds of the ratio to the baseline's run of the same round,
# each as a ratio against the variant on the same inner allocator (Sampler<System> against
# System, Sampler<jemalloc> and jemalloc's profiler against jemalloc, ...). Prints markdown
# tables, the machine and its load, and fails when two builds computed different checksums.
#
# Usage: benches/compare.sh [--quick | --full | --smoke] [options]
#   (no preset)        every variant; callgrind at --cg-scale; 7 timed rounds at --scale
#   --quick            3 timed rounds at a fifth of the default scale, callgrind on
#                      System and Sampler<System> only: a first look in a few minutes
#   --full             7 rounds at scale 1 (syn: every file), and exact mode, dhat and
#                      re_memory under callgrind too; hours
#   --smoke            every build runs every workload once at a tiny scale, one small
#                      callgrind run; checks the checksums (CI)
#   --workloads LIST   churn,json,maps,threads,grow,syn (default: all)
#   --variants LIST    system,sampler,exact,jemalloc,sampler-jemalloc,jemalloc-prof,mimalloc,
#                      sampler-mimalloc,dhat,re_memory,system-fp,sampler-fp,exact-fp (default:
#                      all). `exact` is the sampler build run with HEAPSAMPLER=interval=1. A
#                      `-fp` variant is built with -C force-frame-pointers=yes (and the
#                      sampler's feature frame-pointers). The baseline of each is added.
#   --runs N           rounds of timed runs (default 7)
#   --scale SPEC       timed runs' scale: a number, then optional WORKLOAD=number overrides
#                      (default "0.2,syn=0.25"; 1 is about a second of System on an idle core)
#   --cg-scale SPEC    callgrind scale (default "0.05,json=0.1,maps=0.1,syn=0.02")
#   --cg-variants LIST the variants measured under callgrind (default: the --variants less
#                      exact, exact-fp, dhat and re_memory, whose 3-70x instructions take long
#                      there)
#   --cg-workloads LIST  the workloads measured under callgrind (default: --workloads)
#   --cg-no-baselines  measure only --cg-variants under callgrind, not their baselines (whose
#                      counts come from an earlier run: `report.py old/raw.tsv new/raw.tsv`)
#   --no-callgrind | --no-wall
#   --no-build         use the binaries of an earlier run (benches/compare/target/variants)
#   --out DIR          raw results, callgrind profiles, the report (default
#                      benches/compare/target/results)
# Needs a Rust toolchain (https://rustup.rs). Installs with apt-get, when missing and running
# as root: a C compiler and make (jemalloc's and mimalloc's builds), python3, valgrind,
# /usr/bin/time. Says what it skips when something cannot be had.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
crate="$here/compare"

workloads="churn,json,maps,threads,grow,syn"
variants="system,sampler,exact,jemalloc,sampler-jemalloc,jemalloc-prof,mimalloc,sampler-mimalloc,dhat,re_memory,system-fp,sampler-fp,exact-fp"
cg_variants=""
cg_workloads=""
cg_baselines=1
runs=7
scale="0.2,syn=0.25"
cg_scale="0.05,json=0.1,maps=0.1,syn=0.02"
do_cg=1
do_wall=1
do_build=1
out="$crate/target/results"
preset=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick)
            preset=quick runs=3 scale="0.04,grow=0.1,syn=0.05" cg_variants="system,sampler"
            cg_scale="0.02,json=0.05,maps=0.05,syn=0.01"
            shift ;;
        --full)
            preset=full runs=7 scale="1,syn=1"
            cg_variants="system,sampler,exact,jemalloc,sampler-jemalloc,jemalloc-prof,mimalloc,sampler-mimalloc,dhat,re_memory,system-fp,sampler-fp,exact-fp"
            shift ;;
        --smoke)
            preset=smoke runs=1 scale="0.005,grow=0.01,syn=0.01" cg_variants="system,sampler"
            # The frame-pointer builds are a second build of everything: not in the smoke.
            variants="system,sampler,exact,jemalloc,sampler-jemalloc,jemalloc-prof,mimalloc,sampler-mimalloc,dhat,re_memory"
            cg_scale="0.002" cg_workloads="churn"
            shift ;;
        --workloads) workloads="$2"; shift 2 ;;
        --variants) variants="$2"; shift 2 ;;
        --cg-variants) cg_variants="$2"; shift 2 ;;
        --cg-workloads) cg_workloads="$2"; shift 2 ;;
        --cg-no-baselines) cg_baselines=0; shift ;;
        --runs) runs="$2"; shift 2 ;;
        --scale) scale="$2"; shift 2 ;;
        --cg-scale) cg_scale="$2"; shift 2 ;;
        --no-callgrind) do_cg=0; shift ;;
        --no-wall) do_wall=0; shift ;;
        --no-build) do_build=0; shift ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$cg_variants" ] ||
    cg_variants="$(echo "$variants" | tr ',' '\n' | { grep -vxE 'exact|exact-fp|dhat|re_memory' || true; } | paste -sd, -)"
[ -n "$cg_workloads" ] || cg_workloads="$workloads"
say() { echo "== $*" >&2; }

# The variant another is measured against.
baseline() {
    case "$1" in
        sampler|exact|dhat|re_memory|count) echo system ;;
        sampler-jemalloc|jemalloc-prof) echo jemalloc ;;
        sampler-mimalloc) echo mimalloc ;;
        sampler-fp|exact-fp) echo system-fp ;;
        *) echo "$1" ;;
    esac
}
# The cargo feature a variant is built with.
feature() {
    case "$1" in
        exact) echo sampler ;;
        exact-fp) echo sampler-fp ;;
        *) echo "$1" ;;
    esac
}
# The scale of workload $2 in SPEC $1 ("0.05,syn=0.02").
scale_of() {
    local def=1 over="" part
    IFS=',' read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        case "$part" in
            "$2="*) over="${part#*=}" ;;
            *=*) ;;
            *) def="$part" ;;
        esac
    done
    echo "${over:-$def}"
}
# Adds each variant's baseline in front of it, without duplicates.
with_baselines() {
    local v list=()
    IFS=',' read -ra vs <<<"$1"
    for v in "${vs[@]}"; do list+=("$(baseline "$v")" "$v"); done
    printf '%s\n' "${list[@]}" | awk 'NF && !seen[$0]++' | paste -sd, -
}
# LIST less the variants built from feature $2.
without_feature() {
    echo "$1" | tr ',' '\n' | while read -r v; do [ "$(feature "$v")" = "$2" ] || echo "$v"; done | paste -sd, -
}
variants="$(with_baselines "$variants")"
[ "$cg_baselines" = 0 ] || cg_variants="$(with_baselines "$cg_variants")"

# Tools.
command -v cargo >/dev/null || {
    echo "cargo not found: install a Rust toolchain (https://rustup.rs), then run this again" >&2
    exit 1
}
need=()
command -v make >/dev/null || need+=(make)
command -v cc >/dev/null || need+=(gcc)
command -v python3 >/dev/null || need+=(python3)
[ -x /usr/bin/time ] || need+=(time)
[ "$do_cg" = 0 ] || command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing ${need[*]}"
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 || true
    else
        say "missing ${need[*]} (not root, or no apt-get): install them to measure everything"
    fi
fi
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
if [ "$do_cg" = 1 ] && ! command -v valgrind >/dev/null; then
    say "skipping the instruction counts: no valgrind"
    do_cg=0
fi
if [ "$do_wall" = 1 ] && [ ! -x /usr/bin/time ]; then
    say "skipping the timed runs: no /usr/bin/time (GNU time, for the peak RSS)"
    do_wall=0
fi

mkdir -p "$out" "$crate/target/variants"
raw="$out/raw.tsv"
: >"$raw"

# The syn workload's corpus: the pinned crates of compare/corpus/, as cargo downloads them.
if [[ ",$workloads,$cg_workloads," == *,syn,* ]]; then
    say "syn corpus"
    corpus="$crate/target/syn-corpus"
    printf 'corpus\t%s\n' "$(python3 "$crate/corpus.py" "$corpus")" >>"$raw"
    export COMPARE_SYN_DIR="$corpus"
fi

# Builds: one binary per feature (and `count`, for the number of allocator calls).
features="$( (echo "$variants,$cg_variants,count" | tr ',' '\n' | while read -r v; do feature "$v"; done) | awk 'NF && !seen[$0]++')"
for f in $features; do
    if [ "$do_build" = 1 ]; then
        say "build $f"
        # A `-fp` build: the same program with frame pointers everywhere (the standard library
        # has them already), in a target directory of its own since the flags differ.
        base="${f%-fp}" target="${CARGO_TARGET_DIR:-$crate/target}" flags="${RUSTFLAGS:-}" cargo_f="$f"
        if [ "$base" != "$f" ]; then
            target="$crate/target/fp" flags="$flags -C force-frame-pointers=yes" cargo_f="$base"
            [[ "$base" != sampler* ]] || cargo_f="$base,heapsampler/frame-pointers"
        fi
        if ! (cd "$crate" && CARGO_TARGET_DIR="$target" RUSTFLAGS="$flags" \
            nice cargo build --quiet --release --features "$cargo_f" >&2); then
            say "skipping $f: its build failed (above)"
            rm -f "$crate/target/variants/compare-$f"
        else
            # A rename: a binary still running from an earlier run keeps its copy.
            cp "$target/release/compare" "$crate/target/variants/.compare-$f"
            mv -f "$crate/target/variants/.compare-$f" "$crate/target/variants/compare-$f"
        fi
    fi
    if [ ! -x "$crate/target/variants/compare-$f" ]; then
        [ "$do_build" = 1 ] || say "skipping $f: not built"
        printf 'skipped\t%s\tnot built\n' "$f" >>"$raw"
        variants="$(without_feature "$variants" "$f")"
        cg_variants="$(without_feature "$cg_variants" "$f")"
    fi
done

# Runs one variant: run VARIANT WORKLOAD SCALE [command prefix...]
run() {
    local v="$1" w="$2" s="$3"
    shift 3
    local hs=()
    [ "$v" = exact ] || [ "$v" = exact-fp ] && hs=(HEAPSAMPLER=interval=1)
    env -u HEAPSAMPLER -u _RJEM_MALLOC_CONF -u MALLOC_CONF -u MIMALLOC_OPTIONS "${hs[@]}" \
        "$@" "$crate/target/variants/compare-$(feature "$v")" "$w" "$s"
}
checksum_of() { sed -n 's/.*: checksum \([0-9]*\),.*/\1/p' "$1" | head -1; }
load() { cut -d' ' -f1 /proc/loadavg; }

{
    printf 'machine\t%s; %s cores; %s GiB; %s; glibc %s; %s; valgrind %s\n' \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(nproc)" \
        "$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)" \
        "$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || uname -sr)" \
        "$(ldd --version | head -1 | sed 's/.* //')" "$(rustc --version | cut -d' ' -f1-2)" \
        "$(valgrind --version 2>/dev/null | sed 's/valgrind-//' || echo none)"
    printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
    printf 'commit\t%s\n' "$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$here" diff --quiet HEAD 2>/dev/null || echo ' (modified)')"
} >>"$raw"

IFS=',' read -ra V <<<"$variants"
IFS=',' read -ra CV <<<"$cg_variants"

if [ "$do_cg" = 1 ]; then
    IFS=',' read -ra W <<<"$cg_workloads"
    for w in "${W[@]}"; do
        s="$(scale_of "$cg_scale" "$w")"
        # Allocator calls the program makes at this scale (the same for every build).
        if [ -x "$crate/target/variants/compare-count" ]; then
            run count "$w" "$s" 2>"$out/count.log" >/dev/null
            calls="$(sed -n 's/^allocator calls: \([0-9]*\).*/\1/p' "$out/count.log")"
            [ "$w" != syn ] || printf 'note\tcallgrind at %s: %s\n' "$s" "$(grep '^syn:' "$out/count.log")" >>"$raw"
            printf 'calls\t%s\t%s\t%s\n' "$w" "$s" "$calls" >>"$raw"
        fi
        for v in "${CV[@]}"; do
            sv="$s"
            say "callgrind $w $v (scale $sv)"
            f="$out/callgrind.$w.$v.out"
            printf 'load\t%s\n' "$(load)" >>"$raw"
            run "$v" "$w" "$sv" nice valgrind --tool=callgrind --callgrind-out-file="$f" \
                >"$out/stdout.tmp" 2>"$out/callgrind.$w.$v.log"
            ir="$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$f" | head -1)"
            [ -n "$ir" ] || ir="$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$f" | head -1)"
            printf 'cg\t%s\t%s\t%s\t%s\n' "$w" "$sv" "$v" "$ir" >>"$raw"
            printf 'checksum\t%s\t%s\t%s\t%s\n' "$w" "$sv" "$v" "$(checksum_of "$out/stdout.tmp")" >>"$raw"
        done
    done
fi

if [ "$do_wall" = 1 ]; then
    IFS=',' read -ra W <<<"$workloads"
    n=${#V[@]}
    for w in "${W[@]}"; do
        s="$(scale_of "$scale" "$w")"
        for ((r = 0; r < runs; r++)); do
            for ((i = 0; i < n; i++)); do
                v="${V[$(((i + r) % n))]}"
                say "timed $w round $((r + 1))/$runs $v (scale $s)"
                printf 'load\t%s\n' "$(load)" >>"$raw"
                run "$v" "$w" "$s" python3 "$crate/measure.py" >"$out/time.tmp" 2>"$out/wall.log" ||
                    { cat "$out/wall.log" >&2; exit 1; }
                read -r secs rss cpu < <(tail -1 "$out/time.tmp")
                [ "$w$r$i" != syn00 ] || printf 'note\ttimed runs at %s: %s\n' "$s" "$(grep '^syn:' "$out/wall.log")" >>"$raw"
                printf 'wall\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$s" "$v" "$r" "$secs" "$rss" "$cpu" >>"$raw"
                printf 'checksum\t%s\t%s\t%s\t%s\n' "$w" "$s" "$v" "$(checksum_of "$out/time.tmp")" >>"$raw"
            done
        done
    done
fi
printf 'load\t%s\n' "$(load)" >>"$raw"

python3 "$crate/report.py" "$raw" | tee "$out/report.md"
