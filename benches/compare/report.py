#!/usr/bin/env python3
"""Markdown tables from the raw results of benches/compare.sh (raw.tsv; several files are
merged, a later one winning). Exits 1 when two builds computed different checksums for the same
workload at the same scale: then they did not do the same work."""

import statistics
import sys
from collections import defaultdict

ORDER = ["system", "sampler", "exact", "dhat", "re_memory", "jemalloc", "sampler-jemalloc",
         "jemalloc-prof", "mimalloc", "sampler-mimalloc", "system-fp", "sampler-fp", "exact-fp"]
WORKLOADS = ["churn", "json", "maps", "threads", "grow", "syn"]
LABEL = {
    "system": "System",
    "sampler": "Sampler\\<System\\>",
    "exact": "Sampler\\<System\\>, exact (`interval=1`)",
    "dhat": "dhat",
    "re_memory": "re_memory, call stacks on",
    "jemalloc": "jemalloc",
    "sampler-jemalloc": "Sampler\\<jemalloc\\>",
    "jemalloc-prof": "jemalloc's profiler, `lg_prof_sample:19`",
    "mimalloc": "mimalloc",
    "sampler-mimalloc": "Sampler\\<mimalloc\\>",
    "system-fp": "System, frame pointers",
    "sampler-fp": "Sampler\\<System\\>, frame pointers",
    "exact-fp": "Sampler\\<System\\>, frame pointers, exact",
}


def baseline(v):
    if v in ("sampler", "exact", "dhat", "re_memory"):
        return "system"
    if v in ("sampler-jemalloc", "jemalloc-prof"):
        return "jemalloc"
    if v == "sampler-mimalloc":
        return "mimalloc"
    if v in ("sampler-fp", "exact-fp"):
        return "system-fp"
    return v


def ordered(vs):
    return sorted(vs, key=lambda v: ORDER.index(v) if v in ORDER else len(ORDER))


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main(paths):
    meta = {}
    notes = []
    loads = []
    sums = defaultdict(lambda: defaultdict(set))  # (w, scale) -> checksum -> {variant}
    cg = {}
    cg_scale = {}
    calls = {}
    wall = defaultdict(dict)  # (w, v) -> {round: (secs, rss)}
    wall_scale = {}
    lines = [line for path in paths for line in open(path)]
    for line in lines:
        f = line.rstrip("\n").split("\t")
        if f[0] in ("machine", "date", "commit"):
            meta[f[0]] = f[1]
        elif f[0] == "note":
            notes.append(f[1])
        elif f[0] == "corpus":
            notes.append(f"syn corpus (benches/compare/corpus/Cargo.lock): {f[1]}")
        elif f[0] == "skipped":
            notes.append(f"skipped {f[1]}: {f[2]}")
        elif f[0] == "load":
            loads.append(float(f[1]))
        elif f[0] == "checksum":
            sums[(f[1], f[2])][f[4]].add(f[3])
        elif f[0] == "cg" and f[4]:
            cg[(f[1], f[3])] = int(f[4])
            cg_scale[f[1]] = f[2]
        elif f[0] == "calls" and f[3]:
            calls[f[1]] = int(f[3])
        elif f[0] == "wall":
            cpu = float(f[7]) if len(f) > 7 and f[7] else None
            wall[(f[1], f[3])][int(f[4])] = (float(f[5]), int(f[6]), cpu)
            wall_scale[f[1]] = f[2]
    print(f"Machine: {meta.get('machine', '?')}.\n")
    print(f"Run: {meta.get('date', '?')}, heapsampler at {meta.get('commit', '?')}", end="")
    if loads:
        print(f"; load average (1 min) during the runs {min(loads):.1f}–{max(loads):.1f}, "
              f"median {statistics.median(loads):.1f}", end="")
    print(".\n")
    for n in notes:
        print(f"- {n}")
    if notes:
        print()

    if cg:
        ws = [w for w in WORKLOADS if w in cg_scale]
        vs = ordered({v for (_, v) in cg})
        print("**Instructions** (callgrind, total Ir of the process; a baseline in millions, "
              "the others as a ratio to their baseline)\n")
        head = ["", *[f"{w} ({cg_scale[w]})" for w in ws]]
        rows = []
        for v in vs:
            b = baseline(v)
            cells = []
            for w in ws:
                if (w, v) not in cg:
                    cells.append("")
                elif b == v:
                    cells.append(f"{cg[(w, v)] / 1e6:,.1f} M")
                elif (w, b) in cg:
                    cells.append(f"{cg[(w, v)] / cg[(w, b)]:.3f}")
                else:
                    cells.append("")
            rows.append([LABEL.get(v, v), *cells])
        rows.append(["allocator calls", *[f"{calls[w]:,}" if w in calls else "" for w in ws]])
        for v in vs:
            if baseline(v) != v:
                b = baseline(v)
                cells = []
                for w in ws:
                    if (w, v) in cg and (w, b) in cg and calls.get(w):
                        cells.append(f"{(cg[(w, v)] - cg[(w, b)]) / calls[w]:.1f}")
                    else:
                        cells.append("")
                rows.append([f"instructions added per call, {LABEL[v]}", *cells])
        print(table(head, rows))
        print()

    if wall:
        ws = [w for w in WORKLOADS if w in wall_scale]
        vs = ordered({v for (_, v) in wall})
        rounds = max(len(r) for r in wall.values())
        has_cpu = all(r[2] is not None for runs in wall.values() for r in runs.values())
        for kind in ("wall", "cpu", "rss") if has_cpu else ("wall", "rss"):
            if kind == "wall":
                print(f"**Wall time** (median of {rounds} rounds, the variants in turn; a baseline "
                      "in seconds, the others as the median of their ratio to the baseline in "
                      "the same round)\n")
            elif kind == "cpu":
                print("**CPU time**, user + system (as wall time; less disturbed by other "
                      "processes on a busy machine)\n")
            else:
                print(f"**Peak RSS** (median of {rounds} runs; a baseline in MiB, the others as "
                      "a ratio to it and the difference in MiB)\n")
            i = {"wall": 0, "rss": 1, "cpu": 2}[kind]
            head = ["", *[f"{w} ({wall_scale[w]})" for w in ws]]
            rows = []
            for v in vs:
                b = baseline(v)
                cells = []
                for w in ws:
                    mine = wall.get((w, v), {})
                    base = wall.get((w, b), {})
                    if not mine:
                        cells.append("")
                        continue
                    if b == v:
                        x = statistics.median(m[i] for m in mine.values())
                        cells.append(f"{x / 1024:.1f}" if kind == "rss" else f"{x:.2f} s")
                        continue
                    common = [r for r in mine if r in base and base[r][i] > 0]
                    if not common:
                        cells.append("")
                        continue
                    if kind == "rss":
                        mv = statistics.median(mine[r][1] for r in common)
                        bv = statistics.median(base[r][1] for r in common)
                        cells.append(f"{mv / bv:.3f} ({(mv - bv) / 1024:+.1f})")
                    else:
                        ratio = statistics.median(mine[r][i] / base[r][i] for r in common)
                        cells.append(f"{ratio:.2f}")
                rows.append([LABEL.get(v, v), *cells])
            print(table(head, rows))
            print()

    bad = {k: c for k, c in sums.items() if len(c) > 1}
    if sums and not bad:
        print(f"Checksums: every build computed the same, in each of the {len(sums)} "
              "(workload, scale) pairs run.")
    for (w, s), c in sorted(bad.items()):
        groups = "; ".join(f"{k or 'none'} from {', '.join(sorted(v))}" for k, v in c.items())
        print(f"**CHECKSUMS DIFFER** for {w} at {s}: {groups}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
