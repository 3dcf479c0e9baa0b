#!/usr/bin/env python3
"""Turns results/bench-*/report.json into report.md and mpps_vs_rules.{png,svg}."""
import json, os, sys

out = sys.argv[1]
r = json.load(open(os.path.join(out, "report.json")))
m = r["machine"]


def f(v, fmt="{:.3f}"):
    return "-" if v is None else fmt.format(v)


lines = [
    f"Machine: {m['cpu']}, {m['cores']} cores (shared with other work: expect a few % noise), "
    f"kernel {m['kernel']}. Veth testbed; frames {r['frame_size']} bytes (60 on the wire + FCS), "
    f"IPv4/UDP, one flow. Trials {r['trial_secs']} s; zero-loss search resolution {r['resolution'] * 100:g}%.",
    "",
    "Generator + sink alone (back to back): " + ", ".join(
        f"{k} {v:.3f} Mpps" for k, v in r["capacity"].items()),
    "",
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
    lines += ["", "Skipped:"] + [f"- {s['system']} {s.get('rules', '')}: {s['why']}" for s in r["skipped"]]
lines += ["", "Linux check (max-rate trial): ingress veth rx / IP ForwDatagrams / sink received:"]
for row in r["rows"]:
    if row["system"].startswith("linux"):
        lines.append(f"- {row['system']} @ {row['rules']}: {row['ingress_rx_at_max']} / "
                     f"{row['linux_forwarded_at_max']} / {row['sink_received_at_max']}")
modes = {row.get("mode") for row in r["rows"] if row.get("mode")}
if modes:
    lines += ["", "fwd reported: " + "; ".join(sorted(modes))]
open(os.path.join(out, "report.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

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
