#!/usr/bin/env bash
# valgrind memcheck over a subset of the allocator's integration tests: sampled and exact
# recording, frees (also from other threads), realloc, threads (more than the profiler has
# slots for), fork, the Reporter writing JSON files, LeakCheck, and the counting oracle of the
# stress crate. Every run must end with zero memcheck errors; the script prints a summary and
# exits non-zero on any error, any failed test, or a run valgrind did not finish.
#
# The test binaries are the ones `cargo test --workspace --features cli` builds (called after
# it, nothing is rebuilt). They run directly under valgrind, with test filters: memcheck makes
# them 20-100x slower, so the statistical tests (hundreds of millions of allocations), the
# tests that fill the whole 64 MiB page pool, and the tests that wait on a wall-clock deadline
# are left out.
#
# Leak policy: `--leak-check=full`, and only *definitely lost* blocks are errors. The
# profiler's tables live as long as the process and stay reachable from statics ("still
# reachable", not reported); a block no pointer reaches any more was lost by someone. The tests
# below leak nothing on purpose that valgrind could see as definitely lost, except the ones
# named in .ci/valgrind.supp.
set -euo pipefail
cd "$(dirname "$0")/.."

# One line per test binary: optional NAME=value environment settings and --valgrind-options,
# the test target's name, then the exact names of the tests to run (none for a binary without
# the libtest harness: it runs whole). `.ci/valgrind.sh safety reports` runs only those two.
SELECTION=(
    # Sampling at the default interval, a snapshot's totals.
    "snapshot_totals a_snapshot_counts_the_allocations_just_before_it"
    # Refused allocations and reallocations (growth failing in the inner allocator).
    "refused_allocations refused_requests_leave_the_totals_unchanged"
    # A worker thread's growth seen by the peak tracker.
    "peak peak_live_bytes_sees_a_worker_threads_growth_within_the_bound"
    # Threads registering with the profiler, not counted as program traffic.
    "thread_start registering_new_threads_is_not_counted_as_program_traffic"
    # 600 threads alive at once, more than the 512 thread slots; then they exit.
    "totals_slots totals_are_exact_with_more_threads_than_slots_and_after_they_exit"
    # Four threads freeing each other's blocks, sampled at 4 KiB (thousands of samples), then
    # exact (interval 1).
    "threads four_threads_free_each_others_blocks_sampled_and_exact"
    # fork() with other threads busy in the allocator (the children allocate and snapshot),
    # 20 rounds instead of 200; allocation before main, in thread-local destructors, and with
    # the tables full. No leak check here: in a fork child the blocks held by the parent's
    # other threads (their stacks and thread-locals are gone) are unreachable by construction,
    # and scanning a 60 MB heap in each child would take minutes.
    "HEAPSAMPLER_TEST_FORK_ROUNDS=20 HEAPSAMPLER_TEST_FORK_PATIENCE_SECS=300 --leak-check=no safety allocation_works_before_main allocation_inside_thread_local_destructors_is_recorded child_after_fork_allocates_while_parent_thread_is_busy full_tables_drop_and_count_samples_and_stay_within_bounds"
    # LeakCheck: realloc inside the check and from another thread, frees from other threads,
    # nested checks, eight checks on eight threads, the failure message (symbolization).
    "leak_check a_block_reallocated_in_scope_is_tracked_through_the_realloc a_block_of_the_check_reallocated_by_another_thread_stays_in_the_check memory_freed_by_another_thread_counts_as_freed nested_checks_inner_sees_its_own_outer_sees_everything eight_checks_on_eight_threads_at_the_same_time failure_message_gives_total_then_each_site_with_the_test_frames_first leak_in_a_thread_spawned_with_the_opt_in_is_caught"
    # The Reporter: JSON reports written, rotated, read back; damaged files; its own work
    # kept out of the user's sites at a small interval.
    "reports report_round_trips_and_names_the_tests_functions rotation_final_report_and_prompt_stop unknown_version_and_damaged_files_give_clear_errors reporter_work_is_overhead_not_a_user_site"
    # The HEAPSAMPLER variable, in child processes (exec'd: --trace-children).
    "env_config env_sets_interval_and_starts_reporter_with_final_report_at_exit bad_values_warn_once_each_and_keep_defaults"
    # A counting oracle around Sampler<System>: totals equal to the byte.
    "oracle_smoke"
    # (guarded_apis, every API under the oracle at four intervals with forked children, is left
    # out: ~13 minutes under memcheck. It runs natively in the suite and in the soak.)
)

if ! command -v valgrind >/dev/null; then
    echo "valgrind is not installed" >&2
    exit 1
fi
valgrind --version

# Test target name -> executable, from cargo's build messages.
declare -A EXE
while read -r name path; do
    EXE[$name]=$path
done < <(cargo test --workspace --features cli --no-run --message-format=json |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])
')

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/heapsampler-valgrind.XXXXXX")
VALGRIND=(
    valgrind
    --tool=memcheck
    --error-exitcode=99
    --leak-check=full
    --show-leak-kinds=definite
    --errors-for-leak-kinds=definite
    --suppressions=.ci/valgrind.supp
    # Children exec'd by the tests (env_config re-runs its own binary) run under memcheck too.
    --trace-children=yes
    # totals_slots keeps 601 threads alive at once (valgrind's default limit is 500).
    --max-threads=1024
    # Valgrind runs one thread at a time; its default hand-over lets a busy thread keep the
    # lock for long stretches (a fork round took from 1 to 100 s). Fair scheduling hands it
    # over in turn.
    --fair-sched=yes
    --num-callers=40
)

failed=0
total_tests=0
total_errors=0
binaries=0
total_cpu=0
started=$(date +%s)
# CPU seconds (user + system) used so far by the script's finished children, in $cpu_now: on a
# shared machine, wall-clock time says little about the cost. (`times` must run in this shell,
# not in a pipeline or a command substitution, to see its children.)
children_cpu() {
    times >"$LOGS/times"
    cpu_now=$(tail -n 1 "$LOGS/times" | awk '{
        s = 0
        for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] }
        printf "%d\n", s
    }')
}
printf '%-20s %6s %7s %8s %8s  %s\n' binary tests errors seconds cpu-secs status > "$LOGS/summary"
for entry in "${SELECTION[@]}"; do
    read -r -a words <<<"$entry"
    env=()
    options=()
    while [[ ${words[0]} == *=* ]]; do
        if [[ ${words[0]} == --* ]]; then options+=("${words[0]}"); else env+=("${words[0]}"); fi
        words=("${words[@]:1}")
    done
    name=${words[0]}
    filters=("${words[@]:1}")
    # Arguments, if any, name the binaries to run (all of them by default).
    if (($#)) && [[ " $* " != *" $name "* ]]; then
        continue
    fi
    exe=${EXE[$name]:-}
    if [[ -z $exe ]]; then
        echo "no test binary named $name" >&2
        failed=1
        continue
    fi
    args=()
    if ((${#filters[@]})); then
        # Valgrind runs one thread at a time: more test threads would not finish sooner.
        args=(--exact --test-threads=1 "${filters[@]}")
    fi
    echo "== valgrind: ${env[*]} ${options[*]} $name ${filters[*]}"
    t0=$(date +%s)
    children_cpu
    cpu0=$cpu_now
    status=ok
    if ! env "${env[@]}" "${VALGRIND[@]}" "${options[@]}" --log-file="$LOGS/$name.%p.log" \
        "$exe" "${args[@]}" >"$LOGS/$name.out" 2>&1; then
        status=FAILED
    fi
    seconds=$(($(date +%s) - t0))
    children_cpu
    cpu=$((cpu_now - cpu0))
    # Every process (the test binary, its fork children, exec'd children) writes its own log;
    # each must end with an error summary.
    errors=0
    for log in "$LOGS/$name".*.log; do
        summary=$(grep -o 'ERROR SUMMARY: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)
        if [[ -z $summary ]]; then
            echo "valgrind did not finish: $log" >&2
            status=FAILED
        else
            errors=$((errors + summary))
        fi
    done
    if ((${#filters[@]})); then
        tests=$(grep -o '^test result: .* \([0-9]*\) passed' "$LOGS/$name.out" |
            grep -o '[0-9]* passed' | grep -o '[0-9]*' || echo 0)
        if [[ $tests != "${#filters[@]}" ]]; then
            echo "$name: ran $tests of ${#filters[@]} selected tests" >&2
            status=FAILED
        fi
    else
        tests=1
    fi
    ((errors == 0)) || status=FAILED
    if [[ $status != ok ]]; then
        failed=1
        cat "$LOGS/$name.out"
        for log in "$LOGS/$name".*.log; do
            grep -q 'ERROR SUMMARY: 0 errors' "$log" || cat "$log"
        done
    fi
    binaries=$((binaries + 1))
    total_tests=$((total_tests + tests))
    total_errors=$((total_errors + errors))
    total_cpu=$((total_cpu + cpu))
    printf '%-20s %6s %7s %8s %8s  %s\n' "$name" "$tests" "$errors" "$seconds" "$cpu" "$status" >> "$LOGS/summary"
done

echo "== valgrind summary"
cat "$LOGS/summary"
echo "$binaries binaries, $total_tests tests, $total_errors errors," \
    "$(($(date +%s) - started)) s ($total_cpu CPU s)"
if ((failed)); then
    echo "valgrind: FAILED (logs in $LOGS)" >&2
    exit 1
fi
rm -rf "$LOGS"
