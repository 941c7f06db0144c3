#!/usr/bin/env python3
"""benches/fleet.sh's report: fleet.jsonl -> results.md and PNG plots.

    fleet-report.py FLEET.jsonl OUTDIR ELAPSED_S MACHINE

Every figure is a median over the runs with its range; ratios compare
systems measured in the same run. "Best alternative" is the best of
HAProxy, shadowsocks-libev and (where it applies) the kernel's MPTCP with
no proxy; a ratio above 1 means ours is better, whichever way the metric
points (for times and bytes, best alternative / ours)."""
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict

SYSTEMS = ["ours", "haproxy", "shadowsocks", "kernel"]
NAMES = {"ours": "ours", "haproxy": "HAProxy", "shadowsocks": "shadowsocks",
         "kernel": "kernel MPTCP (no proxy)", "routed": "plain routing"}
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out, elapsed, machine = sys.argv[2], int(sys.argv[3]), sys.argv[4]
med = statistics.median
md = []
bars = []  # (label, {system: ratio to the best alternative})


def rng(v, fmt="{:.1f}"):
    if not v:
        return "-"
    s = fmt.format(med(v))
    return s if len(v) == 1 else f"{s} [{fmt.format(min(v))}-{fmt.format(max(v))}]"


def by(scen, **kw):
    return [r for r in rows if r["scenario"] == scen and all(r.get(k) == v for k, v in kw.items())]


def ratio_bar(label, vals, higher_better=True, alternatives=("haproxy", "shadowsocks", "kernel")):
    """vals: system -> median; adds a bar group normalised to the best alternative."""
    alts = [vals[s] for s in alternatives if vals.get(s)]
    if not alts or not vals.get("ours"):
        return None
    best = max(alts) if higher_better else min(alts)
    r = {s: (v / best if higher_better else best / v) for s, v in vals.items() if v}
    bars.append((label, r))
    return r["ours"]


def sysorder(present):
    return [s for s in ["ours", "haproxy", "shadowsocks", "kernel", "routed"] if s in present]


# ---------------------------------------------------------------- aggregation
agg = by("agg")
if agg:
    md += ["## Aggregation on heterogeneous paths", "",
           "One flow (iperf3) from the LAN client, upload and download; Mbit/s median [range]; "
           "ratio = the flow over the sum of what each path delivers alone in the same run.", "",
           "| paths | dir | sum of paths alone | " + " | ".join(NAMES[s] for s in SYSTEMS) + " | ours vs best alternative |",
           "| --- | --- | --- | " + " | ".join("---" for _ in SYSTEMS) + " | --- |"]
    for paths in dict.fromkeys(r["paths"] for r in agg):
        for d in ("up", "down"):
            rs = by("agg", paths=paths, dir=d)
            runs = sorted({r["run"] for r in rs})
            sums = [sum(r["mbit"] for r in rs if r["run"] == k and r["system"].startswith("path")) for k in runs]
            cells, vals = [], {}
            for s in SYSTEMS:
                v = [r["mbit"] for r in rs if r["system"] == s]
                ratios = [r["mbit"] / sums[runs.index(r["run"])] for r in rs if r["system"] == s and sums[runs.index(r["run"])]]
                if v:
                    vals[s] = med(v)
                    cells.append(f"{rng(v)} ({med(ratios):.3f})")
                else:
                    cells.append("-")
            o = ratio_bar(f"agg {paths} {d}", vals)
            md.append(f"| {paths} | {d} | {rng(sums)} | " + " | ".join(cells) + (f" | {o:.3f} |" if o else " | - |"))
    md.append("")

# ---------------------------------------------------------------- failover
fo = by("failover")


def stalls(r):
    """Seconds below 10% of the rate before each event, within 3 s after it."""
    m, dt = r["mbit"], r["interval_s"]
    res = []
    for e in r["events"]:
        i = int(round(e / dt))
        pre = [x for x in m[max(0, i - 15):i] if x > 0]
        if not pre or i >= len(m):
            res.append(None)
            continue
        thr = 0.1 * med(pre)
        res.append(round(sum(dt for x in m[i:i + 30] if x < thr), 2))
    return res


if fo:
    md += ["## Failover", "",
           "A long flow; at 3.2 s the last path (the slow or lossy one) goes silent (its delay line drops "
           "everything, the gateway sees no link change), at 6.2 s it comes back, at 9.2 s the first (fast) "
           "path goes silent. Stall = time below 10% of the rate before the event, within 3 s after it "
           "(0.1 s resolution), median [range] in seconds.", "",
           "| paths | dir | event | " + " | ".join(NAMES[s] for s in SYSTEMS) + " |",
           "| --- | --- | --- | " + " | ".join("---" for _ in SYSTEMS) + " |"]
    for paths in dict.fromkeys(r["paths"] for r in fo):
        for d in ("up", "down"):
            per = {s: [stalls(r) for r in by("failover", paths=paths, dir=d, system=s)] for s in SYSTEMS}
            for k, ev in enumerate(("slow path silent", "slow path back", "fast path silent")):
                vals, cells = {}, []
                for s in SYSTEMS:
                    v = [x[k] for x in per[s] if x and x[k] is not None]
                    cells.append(rng(v, "{:.1f}"))
                    if v:
                        vals[s] = med(v) + 0.05  # 0 s stalls compare as half an interval
                if k != 1:
                    ratio_bar(f"failover {paths} {d} {ev.split()[0]}", vals, higher_better=False)
                md.append(f"| {paths} | {d} | {ev} | " + " | ".join(cells) + " |")
    md.append("")
    # timeline plot data: the first run of each system
    for paths in dict.fromkeys(r["paths"] for r in fo):
        tag = paths.replace("+", "-")
        for d in ("up", "down"):
            with open(f"{out}/failover-{tag}-{d}.dat", "w") as f:
                series = {s: (by("failover", paths=paths, dir=d, system=s) or [None])[0] for s in SYSTEMS}
                n = max((len(r["mbit"]) for r in series.values() if r), default=0)
                f.write("t " + " ".join(SYSTEMS) + "\n")
                for i in range(n):
                    f.write(f"{i * 0.1 + 0.1:.1f} " + " ".join(
                        str(series[s]["mbit"][i]) if series[s] and i < len(series[s]["mbit"]) else "NaN"
                        for s in SYSTEMS) + "\n")

# ---------------------------------------------------------------- fleets
fl = by("fleet")


def jain(x):
    return sum(x) ** 2 / (len(x) * sum(v * v for v in x)) if x and any(x) else 0


if fl:
    md += ["## Fleets", "",
           "G gateways upload at once, each with iperf3 -P 2 from its LAN client; aggregate Mbit/s, "
           "Jain's index between gateways, the concentrator side's CPU (our concentrator, HAProxy or "
           "ss-server) per GB and in cores, median [range].", "",
           "| paths | G | workers | system | aggregate Mbit/s | of the nominal up rates | Jain | CPU s/GB (concentrator) | cores (concentrator) | CPU s/GB (gateways) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    plot = defaultdict(dict)
    for key in dict.fromkeys((r["paths"], r["gateways"], r.get("conc_workers", 2)) for r in fl):
        paths, g, w = key
        vals = {}
        for s in SYSTEMS:
            rs = [r for r in fl if (r["paths"], r["gateways"], r.get("conc_workers", 2)) == key and r["system"] == s]
            if not rs:
                continue
            aggs = [sum(r["per_gateway_mbit"]) for r in rs]
            js = [jain(r["per_gateway_mbit"]) for r in rs]
            gb = [sum(r["per_gateway_mbit"]) * r["secs"] / 8e3 for r in rs]
            cpu = [r["conc_cpu_s"] / b for r, b in zip(rs, gb) if b]
            cores = [r["conc_cpu_s"] / r["wall_s"] for r in rs]
            gcpu = [r["gw_cpu_s"] / b for r, b in zip(rs, gb) if b]
            cap = None
            try:
                ups = {"dsl": 10, "lte": 8, "mesh": 20, "vdsl": 40}
                cap = g * sum(ups[p] for p in paths.split("+"))
            except KeyError:
                pass
            frac = f"{med(aggs) / cap:.3f}" if cap else "-"
            na = s == "kernel"
            md.append(f"| {paths} | {g} | {w} | {NAMES[s]} | {rng(aggs)} | {frac} | {rng(js, '{:.3f}')} | "
                      f"{'-' if na else rng(cpu, '{:.2f}')} | {'-' if na else rng(cores, '{:.2f}')} | "
                      f"{'-' if na else rng(gcpu, '{:.2f}')} |")
            vals[s] = med(aggs)
            if paths == "dsl+lte":
                plot[s][g] = (med(aggs), med(js))
            if not na and cpu:
                vals[s + "_cpu"] = med(cpu)
        ratio_bar(f"fleet {paths} G={g} w={w}", {s: v for s, v in vals.items() if "_" not in s})
        cpuv = {s[:-4]: v for s, v in vals.items() if s.endswith("_cpu")}
        if len(cpuv) > 1:
            ratio_bar(f"CPU/GB {paths} G={g} w={w}", cpuv, higher_better=False)
    md.append("")
    with open(f"{out}/fleet.dat", "w") as f:
        gs = sorted({g for s in plot for g in plot[s]})
        f.write("G " + " ".join(f"{s}_mbit {s}_jain" for s in SYSTEMS) + "\n")
        for g in gs:
            f.write(f"{g} " + " ".join(f"{plot[s][g][0]:.2f} {plot[s][g][1]:.4f}" if g in plot[s] else "NaN NaN"
                                      for s in SYSTEMS) + "\n")

# ---------------------------------------------------------------- connection rate
ra = by("rate")
if ra:
    md += ["## Connection rate and latency", "",
           "wrk with `Connection: close` (one TCP connection per request, 1 KiB page from nginx) from "
           "every gateway's LAN client at once; requests/s in all, p50 and p99 (median over gateways), "
           "median [range] over runs; plain routing is the LAN masqueraded over path 1.", "",
           "| paths | gateways × conns | system | requests/s | vs routing | p50 ms | p99 ms | errors |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in dict.fromkeys((r["paths"], r["gateways"], r["conns_per_gateway"]) for r in ra):
        rs = [r for r in ra if (r["paths"], r["gateways"], r["conns_per_gateway"]) == key]
        routed = med([r["rps"] for r in rs if r["system"] == "routed"] or [0])
        vals, p99 = {}, {}
        for s in sysorder({r["system"] for r in rs}):
            x = [r for r in rs if r["system"] == s]
            v = [r["rps"] for r in x]
            vals[s] = med(v)
            p99[s] = med([r["p99_ms"] for r in x if r["p99_ms"] is not None] or [0])
            md.append(f"| {key[0]} | {key[1]} × {key[2]} | {NAMES[s]} | {rng(v, '{:.0f}')} | "
                      f"{med(v) / routed if routed else 0:.2f} | {rng([r['p50_ms'] for r in x if r['p50_ms']])} | "
                      f"{rng([r['p99_ms'] for r in x if r['p99_ms']])} | {sum(r['errors'] for r in x)} |")
        # The kernel reference has no proxy and its client on the gateway
        # itself: shown, but the proxies are the alternatives here.
        proxies = ("haproxy", "shadowsocks")
        ratio_bar(f"req/s {key[0]}", {s: v for s, v in vals.items() if s != "routed"}, alternatives=proxies)
        ratio_bar(f"p99 {key[0]}", {s: v for s, v in p99.items() if s != "routed" and v}, higher_better=False,
                  alternatives=proxies)
    md.append("")

# ---------------------------------------------------------------- latency under load
lu = by("lul")
if lu:
    md += ["## Latency under load", "",
           "A 64-byte request echoed by a server every 0.1 s over one connection through each system, "
           "with the paths idle and while iperf3 -P 2 saturates them upward or downward through the same "
           "system; ms, median [range] over runs of each run's p50 and p99.", "",
           "| paths | load | system | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- |"]
    for paths in dict.fromkeys(r["paths"] for r in lu):
        for load in ("idle", "up", "down"):
            vals = {}
            for s in SYSTEMS:
                x = [r["ping"] for r in by("lul", paths=paths, load=load, system=s) if r.get("ping")]
                if not x:
                    continue
                md.append(f"| {paths} | {load} | {NAMES[s]} | {rng([p['p50_ms'] for p in x])} | "
                          f"{rng([p['p99_ms'] for p in x])} |")
                vals[s] = med([p["p99_ms"] for p in x])
            if load != "idle":
                ratio_bar(f"lag p99 {load}", vals, higher_better=False, alternatives=("haproxy", "shadowsocks"))
    md.append("")

# ---------------------------------------------------------------- memory
me = by("mem")
if me:
    md += ["## Memory per idle flow and per gateway", "",
           "Idle flows spread over the gateways, as many as the descriptor limit lets the concentrator "
           "hold; user-space RSS (KiB) of the proxy processes at rest and with the flows; per flow = the "
           "growth of both ends over the flows. Per gateway = the gateway's proxy process at rest: its "
           "RSS, and its private memory (USS: what it costs beyond the shared libraries, which a router "
           "shares with everything else).", "",
           "| system | flows | concentrator side KiB (rest → idle) | gateways KiB (rest → idle) | bytes per flow | KiB per gateway at rest (RSS / USS) |",
           "| --- | --- | --- | --- | --- | --- |"]
    vals, pg = {}, {}
    for r in me:
        s, n = r["system"], r["flows"]
        per = ((r["conc_rss_kib_idle"] - r["conc_rss_kib_rest"]) + (r["gw_rss_kib_idle"] - r["gw_rss_kib_rest"])) * 1024 / n if n else 0
        vals[s] = max(per, 1)
        uss = r.get("gw_uss_kib_rest")
        pg[s] = (uss if uss else r["gw_rss_kib_rest"]) / r["gateways"]
        md.append(f"| {NAMES[s]} | {n} | {r['conc_rss_kib_rest']} → {r['conc_rss_kib_idle']} | "
                  f"{r['gw_rss_kib_rest']} → {r['gw_rss_kib_idle']} | {per:.0f} | "
                  f"{r['gw_rss_kib_rest'] / r['gateways']:.0f} / {uss / r['gateways'] if uss else float('nan'):.0f} |")
    ratio_bar("memory/flow", vals, higher_better=False)
    ratio_bar("memory/gateway", pg, higher_better=False)
    md.append("")

# ---------------------------------------------------------------- ratios
if bars:
    with open(f"{out}/ratios.dat", "w") as f:
        f.write("metric " + " ".join(SYSTEMS) + "\n")
        for label, r in bars:
            f.write('"%s" ' % label + " ".join(f"{r.get(s, float('nan')):.3f}" for s in SYSTEMS) + "\n")
    md = (["## Ours against the best alternative", "",
           "Per measurement, each system's median over the best alternative's (above 1: better than the "
           "best alternative; times and bytes inverted so that above 1 is better).", "",
           "| measurement | " + " | ".join(NAMES[s] for s in SYSTEMS) + " |",
           "| --- | " + " | ".join("---" for _ in SYSTEMS) + " |"] +
          [f"| {label} | " + " | ".join(f"{r[s]:.2f}" if s in r else "-" for s in SYSTEMS) + " |"
           for label, r in bars] + [""] + md)

head = [f"# Fleet testbed results", "",
        f"`benches/fleet.sh`, {machine}; the run took {elapsed // 60} min {elapsed % 60} s. "
        "Paths (tests/netns/lib.sh path_profile, down/up, one-way delay, jitter, loss): "
        "dsl 50/10 Mbit/s 6 ms; lte 30/8 Mbit/s 22 ms ±10 ms; mesh 20/20 Mbit/s 2 ms ±1 ms 1% loss; "
        "tbf-shaped, tests/pathemu delay lines.", "",
        "![ratios](ratios.png)", ""]
if fo:
    head += ["![failover](failover.png)", ""]
if fl:
    head += ["![fleet](fleet.png)", ""]
open(f"{out}/results.md", "w").write("\n".join(head + [l for l in md if l is not None]) + "\n")

# ---------------------------------------------------------------- plots
gp = ['set terminal pngcairo size 1200,{h} font ",10"', "set key outside right top",
      "set grid ytics"]
if bars:
    script = gp[:] + [f"set output '{out}/ratios.png'".replace("{h}", ""),
                      "set title 'Each system over the best alternative (above 1 = better than the best alternative; log scale)'",
                      "set style data histogram", "set style histogram clustered gap 1", "set style fill solid 0.8",
                      "set xtics rotate by -45 font ',8'", "set logscale y 2", "set yrange [0.125:*]", "set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2",
                      f"plot for [i=2:{len(SYSTEMS) + 1}] '{out}/ratios.dat' using i:xtic(1) title columnhead"]
    script[0] = script[0].replace("{h}", "600")
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=False)
if fo:
    keys = [(p.replace("+", "-"), d) for p in dict.fromkeys(r["paths"] for r in fo) for d in ("up", "down")]
    script = [gp[0].replace("{h}", str(300 * len(keys))), f"set output '{out}/failover.png'", gp[1], gp[2],
              f"set multiplot layout {len(keys)},1", "set ylabel 'Mbit/s'", "set xlabel 's'"]
    for tag, d in keys:
        script += [f"set title 'Failover, {tag}, {d}load (slow path silent 3.2-6.2 s, fast path silent from 9.2 s)'",
                   "unset arrow"] + [f"set arrow from {e}, graph 0 to {e}, graph 1 nohead dt 3" for e in fo[0]["events"]] + [
                   f"plot for [i=2:{len(SYSTEMS) + 1}] '{out}/failover-{tag}-{d}.dat' using 1:i with lines lw 1.5 title columnhead"]
    script.append("unset multiplot")
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=False)
if fl:
    script = [gp[0].replace("{h}", "500"), f"set output '{out}/fleet.png'", gp[1], gp[2],
              "set multiplot layout 1,2", "set logscale x 2", "set xlabel 'gateways (dsl+lte each)'",
              "set title 'Aggregate upload'", "set ylabel 'Mbit/s'", "set key top left",
              f"plot for [i=0:{len(SYSTEMS) - 1}] '{out}/fleet.dat' using 1:(column(2+2*i)) with linespoints title columnhead(2+2*i)",
              "set title \"Jain's index between gateways\"", "set ylabel ''", "set yrange [0:1.05]", "set key bottom left",
              f"plot for [i=0:{len(SYSTEMS) - 1}] '{out}/fleet.dat' using 1:(column(3+2*i)) with linespoints title columnhead(3+2*i)",
              "unset multiplot"]
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=False)
print("\n".join(head[2:3] + [l for l in md if l is not None]))
print(f"\nwritten: {out}/results.md and its plots")
