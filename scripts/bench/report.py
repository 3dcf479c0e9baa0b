#!/usr/bin/env python3
"""Turns results/bench-*/report.json into report.md and mpps_vs_rules.{png,svg}."""
import json, os, sys

out = sys.argv[1]
r = json.load(open(os.path.join(out, "report.json")))
m = r["machine"]


def f(v, fmt="{:.3f}"):
    return "-" if v is None else fmt.format(v)


stateful = r.get("stateful")
lines = [
    f"Machine: {m['cpu']}, {m['cores']} cores (shared with other work: expect a few % noise), "
    f"kernel {m['kernel']}. Veth testbed; frames {r['frame_size']} bytes (60 on the wire + FCS), "
    f"IPv4/UDP, {'flows as below' if stateful is not None else 'one flow'}. Trials {r['trial_secs']} s; "
    f"zero-loss search resolution {r['resolution'] * 100:g}%.",
    "",
    "Generator + sink alone (back to back): " + ", ".join(
        f"{k} {v:.3f} Mpps" for k, v in r["capacity"].items()),
    "",
]
if stateful is not None:
    lines += [
        "Connection tracking, one stateful ruleset on both sides (FORWARD policy DROP; "
        "ESTABLISHED,RELATED accept; INVALID drop; NEW udp/9 outbound accept). CPU ns/pkt: Linux, the "
        "forwarding core's busy time (/proc/stat); fwd, whose worker spins, the time its worker spent in rounds "
        "that moved frames (events.busy_ns).",
        "",
        "| system | traffic | max fwd Mpps | zero-loss Mpps | p50 us | p99 us | CPU ns/pkt | table after max trial |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in stateful:
        what = f"established, {row['flows']:,} flows" if row["kind"] == "established" \
            else "new connections (each frame a new flow)"
        t = row.get("after_max") or {}
        lines.append(
            f"| {row['system']} | {what} | {f(row['max_mpps'])} | {f(row['zero_loss_mpps'])} | "
            f"{f(row['p50_us'], '{:.1f}')} | {f(row['p99_us'], '{:.1f}')} | {f(row['cpu_ns_per_pkt'], '{:.0f}')} | "
            f"{t.get('entries', '-')} entries, {t.get('replied', '-')} replied |")
    by = {(row["system"], row["kind"], row["flows"]): row for row in stateful}
    lines.append("")
    for sysname in sorted({row["system"] for row in stateful}):
        est = sorted((row["flows"], row) for (s, k, _), row in by.items() if s == sysname and k == "established")
        if len(est) >= 2:
            (lo, a), (hi, b) = est[0], est[-1]
            lines.append(f"- {sysname}: established at {hi:,} flows / at {lo:,} flows: max "
                         f"{b['max_mpps'] / a['max_mpps']:.2f}x, zero-loss "
                         f"{b['zero_loss_mpps'] / max(a['zero_loss_mpps'], 1e-9):.2f}x")
    fn, ln = by.get(("fwd", "new", None)), by.get(("linux-iptables", "new", None))
    if fn and ln:
        lines.append(f"- new connections/s, fwd / Linux conntrack: max {fn['max_mpps'] / ln['max_mpps']:.2f}x, "
                     f"zero-loss {fn['zero_loss_mpps'] / max(ln['zero_loss_mpps'], 1e-9):.2f}x")
    setup = {c["system"]: c for c in r.get("setup_cost", [])}
    spread = {}
    for c in setup.values():
        d = sorted(n - k for k, n, _, _ in c["pairs"])
        spread[c["system"]] = (d[0], d[-1])
        lines.append(f"- {c['system']}: setting a connection up costs {c['setup_ns']:.0f} ns of CPU over a packet "
                     f"of a known flow (median of {len(d)} paired max-rate trials; differences {d[0]:.0f} to "
                     f"{d[-1]:.0f} ns; pairs " + ", ".join(f"{k:.0f}->{n:.0f}" for k, n, _, _ in c["pairs"]) + " ns/pkt)")
    fs, ls = setup.get("fwd"), setup.get("linux-iptables")
    if fs and ls:
        # A difference inside the trials' noise is not a cost: compare with its
        # upper bound (the largest paired difference) instead.
        lo, hi = spread["fwd"]
        if lo > 0:
            lines.append(f"- set-up cost, Linux conntrack / fwd: {ls['setup_ns'] / fs['setup_ns']:.1f}x "
                         f"(connections set up per second of CPU: fwd {1e3 / fs['setup_ns']:.1f} M, "
                         f"Linux {1e3 / ls['setup_ns']:.2f} M)")
        elif hi > 0:
            lines.append(f"- set-up cost: fwd's is inside the trials' noise (paired differences {lo:.0f} to {hi:.0f} ns); "
                         f"against its upper bound, Linux conntrack's ({ls['setup_ns']:.0f} ns) is >= "
                         f"{ls['setup_ns'] / hi:.1f}x (connections set up per second of CPU: fwd >= {1e3 / hi:.1f} M, "
                         f"Linux {1e3 / ls['setup_ns']:.2f} M)")
    lines.append("")
if r["rows"]:
    lines += [
        "| system | rules | generator | max fwd Mpps | zero-loss Mpps | p50 us | p99 us | p99.9 us | CPU ns/pkt | gen/sink headroom |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
for row in r["rows"]:
    cap = r["capacity"].get(row["generator"])
    head = f"{cap / row['max_mpps']:.1f}x" if cap and row["max_mpps"] else "-"
    lines.append(
        f"| {row['system']} | {row['rules']} | {row['generator']} | {f(row['max_mpps'])} | "
        f"{f(row['zero_loss_mpps'])} | {f(row['p50_us'], '{:.1f}')} | {f(row['p99_us'], '{:.1f}')} | "
        f"{f(row['p999_us'], '{:.1f}')} | {f(row['cpu_ns_per_pkt'], '{:.0f}')} | {head} |")
if r["skipped"]:
    lines += ["", "Skipped:"] + [f"- {s['system']} {s.get('rules', s.get('flows', s.get('kind', '')))}: {s['why']}"
                                for s in r["skipped"]]
lines += ["", "Linux check (max-rate trial): ingress veth rx / IP ForwDatagrams / sink received:"]
for row in r["rows"] + (stateful or []):
    if row["system"].startswith("linux"):
        at = row["rules"] if stateful is None else (row["flows"] or "new")
        lines.append(f"- {row['system']} @ {at}: {row['ingress_rx_at_max']} / "
                     f"{row['linux_forwarded_at_max']} / {row['sink_received_at_max']}")
modes = {row.get("mode") for row in r["rows"] if row.get("mode")}
if modes:
    lines += ["", "fwd reported: " + "; ".join(sorted(modes))]
open(os.path.join(out, "report.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

if not r["rows"]:
    sys.exit(0)
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("report: matplotlib missing (apt-get install python3-matplotlib): no plot", file=sys.stderr)
    sys.exit(0)
fig, ax = plt.subplots(figsize=(7, 4.5))
series = {}
for row in r["rows"]:
    series.setdefault(f"{row['system']} ({row['generator']} gen)", []).append((row["rules"], row["max_mpps"]))
for name, pts in sorted(series.items()):
    pts.sort()
    xs = [max(x, 1) for x, _ in pts]  # log axis: 0 rules drawn at 1
    ax.plot(xs, [y for _, y in pts], marker="o", label=name)
ax.set_xscale("log")
ax.set_xlabel("rules (0 drawn at 1)")
ax.set_ylabel("max forwarded Mpps (64 B)")
ax.set_title(f"fwd vs Linux forwarding, veth, {m['kernel']}")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
for ext in ("png", "svg"):
    fig.savefig(os.path.join(out, f"mpps_vs_rules.{ext}"))
