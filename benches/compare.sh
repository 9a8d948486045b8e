#!/usr/bin/env bash
# Whole programs side by side: benches/compare/ built once per global allocator, then
#   (a) instruction counts under valgrind's callgrind (exact and repeatable, even on a busy
#       machine) at a reduced scale, and
#   (b) wall time, CPU time (user + system) and peak RSS, each run a whole process, the
#       variants of a workload taken in turn in every round (A B C, B C A, ...), the median
#       over the rounds,
# each as a ratio against the variant on the same inner allocator (Sampler<System> against
# System, Sampler<jemalloc> and jemalloc's profiler against jemalloc, ...). Prints markdown.
#
# Usage: benches/compare.sh [options]
#   --workloads LIST   churn,json,maps,threads,grow,syn (default: all)
#   --variants LIST    system,sampler,exact,jemalloc,sampler-jemalloc,jemalloc-prof,mimalloc,
#                      sampler-mimalloc,dhat,re_memory (default: all). `exact` is the sampler
#                      build run with HEAPSAMPLER=interval=1. The baseline of each is added.
#   --runs N           rounds of wall-time runs (default 7)
#   --scale SPEC       wall-time scale: a number, then optional WORKLOAD=number overrides
#                      (default "1,syn=0.25"; syn at 1 parses every file of the registry)
#   --cg-scale SPEC    callgrind scale (default "0.05,json=0.1,maps=0.1,syn=0.02")
#   --cg-variants LIST the variants measured under callgrind (default: the --variants less
#                      exact, dhat and re_memory, whose 10-70x instructions take long there)
#   --no-callgrind | --no-wall
#   --no-build         use the binaries of an earlier run (benches/compare/target/variants)
#   --out DIR          raw results, callgrind profiles, the report (default
#                      benches/compare/target/results)
# Needs: a Rust toolchain, a C compiler, make (jemalloc's build), python3, valgrind and
# /usr/bin/time (installed with apt-get when missing and running as root).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
crate="$here/compare"

workloads="churn,json,maps,threads,grow,syn"
variants="system,sampler,exact,jemalloc,sampler-jemalloc,jemalloc-prof,mimalloc,sampler-mimalloc,dhat,re_memory"
cg_variants=""
runs=7
scale="1,syn=0.25"
cg_scale="0.05,json=0.1,maps=0.1,syn=0.02"
do_cg=1
do_wall=1
do_build=1
out="$crate/target/results"
while [ $# -gt 0 ]; do
    case "$1" in
        --workloads) workloads="$2"; shift 2 ;;
        --variants) variants="$2"; shift 2 ;;
        --cg-variants) cg_variants="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --scale) scale="$2"; shift 2 ;;
        --cg-scale) cg_scale="$2"; shift 2 ;;
        --no-callgrind) do_cg=0; shift ;;
        --no-wall) do_wall=0; shift ;;
        --no-build) do_build=0; shift ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$cg_variants" ] ||
    cg_variants="$(echo "$variants" | tr ',' '\n' | { grep -vxE 'exact|dhat|re_memory' || true; } | paste -sd, -)"

# The variant another is measured against.
baseline() {
    case "$1" in
        sampler|exact|dhat|re_memory|count) echo system ;;
        sampler-jemalloc|jemalloc-prof) echo jemalloc ;;
        sampler-mimalloc) echo mimalloc ;;
        *) echo "$1" ;;
    esac
}
# The cargo feature a variant is built with.
feature() { if [ "$1" = exact ]; then echo sampler; else echo "$1"; fi; }
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
    printf '%s\n' "${list[@]}" | awk '!seen[$0]++' | paste -sd, -
}
variants="$(with_baselines "$variants")"
cg_variants="$(with_baselines "$cg_variants")"

# Tools.
need=()
command -v make >/dev/null || need+=(make)
command -v cc >/dev/null || need+=(gcc)
command -v python3 >/dev/null || need+=(python3)
[ -x /usr/bin/time ] || need+=(time)
[ "$do_cg" = 0 ] || command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

# Builds: one binary per feature (and `count`, for the number of allocator calls).
mkdir -p "$out" "$crate/target/variants"
features="$( (echo "$variants,$cg_variants,count" | tr ',' '\n' | while read -r v; do feature "$v"; done) | awk 'NF && !seen[$0]++')"
for f in $features; do
    [ "$do_build" = 1 ] || continue
    echo "== build $f" >&2
    (cd "$crate" && cargo build --quiet --release --features "$f" >&2)
    cp "$crate/target/release/compare" "$crate/target/variants/compare-$f"
done

# Runs one variant: run VARIANT WORKLOAD SCALE [command prefix...]
run() {
    local v="$1" w="$2" s="$3"
    shift 3
    local hs=()
    [ "$v" = exact ] && hs=(HEAPSAMPLER=interval=1)
    env -u HEAPSAMPLER -u _RJEM_MALLOC_CONF -u MALLOC_CONF -u MIMALLOC_OPTIONS "${hs[@]}" \
        "$@" "$crate/target/variants/compare-$(feature "$v")" "$w" "$s"
}

raw="$out/raw.tsv"
: >"$raw"
{
    echo "machine	$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), glibc $(ldd --version | head -1 | sed 's/.* //'), $(rustc --version | cut -d' ' -f1-2), valgrind $(valgrind --version 2>/dev/null | sed 's/valgrind-//' || echo none)"
    echo "date	$(date -u +%Y-%m-%dT%H:%MZ)"
} >>"$raw"

IFS=',' read -ra W <<<"$workloads"
IFS=',' read -ra V <<<"$variants"
IFS=',' read -ra CV <<<"$cg_variants"

if [ "$do_cg" = 1 ]; then
    for w in "${W[@]}"; do
        s="$(scale_of "$cg_scale" "$w")"
        # Allocator calls the program makes at this scale (the same for every build).
        run count "$w" "$s" 2>"$out/count.log" >/dev/null
        calls="$(sed -n 's/^allocator calls: \([0-9]*\).*/\1/p' "$out/count.log")"
        [ "$w" != syn ] || printf 'note\tcallgrind %s\n' "$(grep '^syn:' "$out/count.log")" >>"$raw"
        printf 'calls\t%s\t%s\t%s\n' "$w" "$s" "$calls" >>"$raw"
        for v in "${CV[@]}"; do
            echo "== callgrind $w $v (scale $s)" >&2
            f="$out/callgrind.$w.$v.out"
            run "$v" "$w" "$s" valgrind --tool=callgrind --callgrind-out-file="$f" >/dev/null 2>"$out/callgrind.$w.$v.log"
            ir="$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$f" | head -1)"
            [ -n "$ir" ] || ir="$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$f" | head -1)"
            printf 'cg\t%s\t%s\t%s\t%s\n' "$w" "$s" "$v" "$ir" >>"$raw"
        done
    done
fi

if [ "$do_wall" = 1 ]; then
    n=${#V[@]}
    for w in "${W[@]}"; do
        s="$(scale_of "$scale" "$w")"
        for ((r = 0; r < runs; r++)); do
            for ((i = 0; i < n; i++)); do
                v="${V[$(((i + r) % n))]}"
                echo "== wall $w round $((r + 1))/$runs $v (scale $s)" >&2
                run "$v" "$w" "$s" python3 "$crate/measure.py" >"$out/time.tmp" 2>"$out/wall.log"
                read -r secs rss cpu < <(tail -1 "$out/time.tmp")
                [ "$w$r$i" != syn00 ] || printf 'note\twall %s\n' "$(grep '^syn:' "$out/wall.log")" >>"$raw"
                printf 'wall\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$s" "$v" "$r" "$secs" "$rss" "$cpu" >>"$raw"
            done
        done
    done
fi

python3 "$here/compare/report.py" "$raw" | tee "$out/report.md"
