#!/usr/bin/env python3
"""The measuring half of scripts/bench.sh: runs pktgen -> {fwd | Linux | testpmd} ->
sink trials on a testbed that bench.sh brought up, and writes the report.

Held equal for every system: 64-byte IPv4/UDP frames, one flow, the same generator
core (0) and forwarding core (1: fwd's worker, or the kernel's threaded NAPI kthread
of the ingress veth, or testpmd's lcore), permanent neighbour entries, the same
sink (XDP, counting and dropping), the same trial length and search resolution.
"""
import argparse, json, os, platform, re, signal, subprocess, sys, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--prefix", required=True)
ap.add_argument("--bin", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--quick", action="store_true")
ap.add_argument("--trial", type=float)
ap.add_argument("--rules")
ap.add_argument("--stateful", action="store_true")
ap.add_argument("--flows", help="established-flow counts for --stateful (default 1000 1000000)")
A = ap.parse_args()

P, B, OUT = A.prefix, A.bin, A.out
GEN, FWD, SINK = f"{P}-gen", f"{P}-fwd", f"{P}-sink"
IF_G, IF_A, IF_B, IF_S = f"{P}-g", f"{P}-a", f"{P}-b", f"{P}-s"
TRIAL = A.trial or (1.0 if A.quick else 2.0)
RES = 0.10 if A.quick else 0.001           # binary search stops at this relative width
MAX_STEPS = 5 if A.quick else 12
RULES = [int(x) for x in A.rules.split()] if A.rules else ([0, 1000] if A.quick else [0, 100, 1000, 10000])
FWD_RULES = RULES if A.quick or A.rules else RULES + [100000]
GEN_CORE, FWD_CORE = 0, 1
RAW = open(os.path.join(OUT, "raw.jsonl"), "w")
FWD_SOCK = os.path.join(OUT, "fwd.sock")
# fwd's worker spins, so its core is always busy: its CPU per packet is what the
# worker itself counts as busy (rounds that moved frames, events.busy_ns). Set while
# fwd runs; None means the forwarding core's /proc/stat time is the measure.
WORK_NS = None
USER_HZ = os.sysconf("SC_CLK_TCK")


def sh(*cmd, ns=None, check=True, capture=True, input=None):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    r = subprocess.run(cmd, capture_output=capture, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout if capture else ""


def mac(ns, dev):
    return sh("cat", f"/sys/class/net/{dev}/address", ns=ns).strip()


def progress(msg):
    sys.stderr.write(f"\r\033[K[{time.strftime('%H:%M:%S')}] {msg}")
    sys.stderr.flush()


def log(msg):
    sys.stderr.write(f"\r\033[K{msg}\n")


class CpuSampler:
    """Busy jiffies of the forwarding core, sampled every 50 ms."""
    def __init__(self):
        self.samples, self.stop = [], False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    @staticmethod
    def busy():
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{FWD_CORE} "):
                    v = [int(x) for x in line.split()[1:]]
                    return v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
        return 0

    def run(self):
        while not self.stop:
            self.samples.append((time.monotonic(), self.busy()))
            time.sleep(0.05)

    def at(self, t):
        best = min(self.samples, key=lambda s: abs(s[0] - t))
        return best[1]

    def finish(self):
        self.stop = True
        self.t.join()


def snmp(ns):
    out = sh("cat", "/proc/net/snmp", ns=ns)
    lines = [l.split() for l in out.splitlines() if l.startswith("Ip:")]
    d = dict(zip(lines[0][1:], map(int, lines[1][1:])))
    return d["InReceives"], d["ForwDatagrams"]


def rx_packets(ns, dev):
    return int(sh("cat", f"/sys/class/net/{dev}/statistics/rx_packets", ns=ns))


AMAC, BMAC, SMAC, GMAC = mac(FWD, IF_A), mac(FWD, IF_B), mac(SINK, IF_S), mac(GEN, IF_G)


def trial(engine, rate, sample_every=64, label="", traffic=None):
    """One trial: sink on the sink's veth, pktgen for TRIAL seconds at `rate` (None = max).
    `traffic` (a Traffic) chooses the flows; the default is one flow."""
    traffic = traffic or Traffic()
    sf, gf = os.path.join(OUT, "sink.json"), os.path.join(OUT, "gen.json")
    for f in (sf, gf):
        if os.path.exists(f):
            os.unlink(f)
    sink = subprocess.Popen(["ip", "netns", "exec", SINK, f"{B}/sink", "-i", IF_S, "--engine", "xdp",
                             "--duration", str(TRIAL + 2.0), "--quiet", "--json", sf,
                             "--core", str(GEN_CORE), "--sample-every", str(sample_every)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    cpu = CpuSampler()
    work0 = WORK_NS() if WORK_NS else None
    snmp0, rxa0 = snmp(FWD), rx_packets(FWD, IF_A)
    t0 = time.monotonic()
    g = subprocess.run(["ip", "netns", "exec", GEN, f"{B}/pktgen", "-i", IF_G, "--engine", engine,
                        "--dst-mac", AMAC, "--dst", "198.19.128.1", *traffic.args(),
                        "--size", "64", "--rate", "max" if rate is None else str(int(rate)),
                        "--duration", str(TRIAL), "--core", str(GEN_CORE), "--quiet", "--json", gf],
                       capture_output=True, text=True)
    if g.returncode != 0:
        sink.send_signal(signal.SIGINT); sink.wait()
        raise RuntimeError(f"pktgen failed: {g.stderr.strip()}")
    gen = json.load(open(gf))
    traffic.sent(gen["sent"])
    busy = cpu.at(t0 + gen["duration_secs"]) - cpu.at(t0)
    cpu.finish()
    work = WORK_NS() - work0 if work0 is not None else None
    snmp1, rxa1 = snmp(FWD), rx_packets(FWD, IF_A)
    _, serr = sink.communicate()
    if sink.returncode != 0:
        raise RuntimeError(f"sink failed: {serr.strip()}")
    s = json.load(open(sf))
    unique = s["seq"]["unique"]
    r = {
        "label": label, "engine": engine, "target_pps": rate,
        "sent": gen["sent"], "offered_pps": gen["pps"], "duration": gen["duration_secs"],
        "received": unique, "lost": max(gen["sent"] - unique, 0),
        "reordered": s["seq"]["reordered"], "duplicates": s["seq"]["duplicates"],
        "forwarded_pps": unique / gen["duration_secs"],
        "latency": s["latency"],
        "core_ns_per_pkt": busy * 1e9 / USER_HZ / unique if unique else None,
        "cpu_ns_per_pkt": ((work if work is not None else busy * 1e9 / USER_HZ) / unique) if unique else None,
        "linux_in_receives": snmp1[0] - snmp0[0], "linux_forwarded": snmp1[1] - snmp0[1],
        "ingress_rx_packets": rxa1 - rxa0,
    }
    RAW.write(json.dumps(r) + "\n"); RAW.flush()
    return r


class Traffic:
    """The generator's flows: one flow (the rules table), `flows` flows cycled (the
    established-flow table), or every frame a flow no trial sent before (`fresh`:
    new connections; each trial starts where the previous one ended)."""
    def __init__(self, flows=1, src="198.18.0.2", fresh=False):
        self.flows, self.src, self.fresh, self.next = flows, src, fresh, 0

    def args(self):
        a = ["--src", self.src, "--flows", str(self.flows)]
        return a + (["--first-flow", str(self.next)] if self.fresh else [])

    def sent(self, n):
        self.next += n
        if self.fresh and self.next >= self.flows:
            raise RuntimeError(f"the new-connection trials used all {self.flows} flows: raise FRESH_FLOWS")


def measure(name, engine, rules, traffic=None, reset=None, tag=None, inspect=None):
    """Max rate, zero-loss search, latency at 50% of the zero-loss rate. `reset`
    runs before every trial (the new-connection rows start each from an empty table);
    `inspect` right after the max-rate trial (what the connection table holds)."""
    tag = tag or f"{name} @ {rules} rules"
    reset = reset or (lambda: None)

    def run(rate, **kw):
        reset()
        return trial(engine, rate, traffic=traffic, **kw)
    progress(f"{tag}: max rate")
    mx = run(None, label=f"{tag} max")
    after_max = inspect() if inspect else None
    # Above the max forwarded rate every trial loses: start the search just over it.
    hi = min(mx["offered_pps"], mx["forwarded_pps"] * 1.05)
    lo, best, steps = 0.0, None, 0
    # RFC 2544 26.1: highest offered rate with no loss; the first try is the max.
    if mx["lost"] == 0:
        best = mx
    else:
        while (hi - lo) / hi > RES and steps < MAX_STEPS:
            mid = (lo + hi) / 2
            steps += 1
            progress(f"{tag}: zero-loss search step {steps} at {mid / 1e6:.3f} Mpps "
                     f"(pass >= {lo / 1e6:.3f}, fail at {hi / 1e6:.3f})")
            r = run(mid, label=f"{tag} search")
            if r["lost"] == 0:
                lo, best = mid, r
            else:
                hi = mid
    lat = None
    if best:
        progress(f"{tag}: latency at 50% of {best['offered_pps'] / 1e6:.3f} Mpps")
        lat = run((best["target_pps"] or best["offered_pps"]) * 0.5, sample_every=4,
                  label=f"{tag} latency")
    row = {
        "system": name, "rules": rules, "generator": engine,
        "max_mpps": mx["forwarded_pps"] / 1e6, "max_offered_mpps": mx["offered_pps"] / 1e6,
        "max_loss_pct": 100.0 * mx["lost"] / max(mx["sent"], 1),
        "zero_loss_mpps": best["offered_pps"] / 1e6 if best else 0.0,
        "search_steps": steps,
        "p50_us": lat["latency"]["p50_ns"] / 1e3 if lat else None,
        "p99_us": lat["latency"]["p99_ns"] / 1e3 if lat else None,
        "p999_us": lat["latency"]["p999_ns"] / 1e3 if lat else None,
        "latency_at_mpps": lat["offered_pps"] / 1e6 if lat else None,
        "cpu_ns_per_pkt": mx["cpu_ns_per_pkt"], "core_ns_per_pkt": mx["core_ns_per_pkt"],

        "linux_forwarded_at_max": mx["linux_forwarded"], "ingress_rx_at_max": mx["ingress_rx_packets"],
        "sink_received_at_max": mx["received"], "after_max": after_max,
    }
    log(f"{tag}: max {row['max_mpps']:.3f} Mpps, zero-loss {row['zero_loss_mpps']:.3f} Mpps, "
        f"p99 {row['p99_us']} us, {row['cpu_ns_per_pkt'] or 0:.0f} ns CPU/pkt")
    return row


# ---- the testbed, as an operator would set it up --------------------------------------

def napi_threaded(on):
    """Linux forwards in the ingress veth's NAPI: threaded, its kthread on the forwarding
    core, as an operator gives kernel forwarding its own core. A userspace poller (fwd,
    testpmd) owns that core itself; sharing it with the kthread time-slices the two (the
    first quick run: fwd 0.21 Mpps at 4.9 us CPU/pkt), so for them NAPI stays in softirq
    on the sending core, as it is by default."""
    sh("sh", "-c", f"echo {int(on)} > /sys/class/net/{IF_A}/threaded", ns=FWD)
    if on:
        for line in sh("ps", "-eo", "pid,comm").splitlines():
            pid, _, comm = line.strip().partition(" ")
            if comm.startswith(f"napi/{IF_A}-"):
                sh("taskset", "-pc", str(FWD_CORE), pid)


def setup_common():
    # GRO on so that veth runs NAPI (and takes XDP-redirected frames) without a program.
    sh("ethtool", "-K", IF_A, "gro", "on", ns=FWD)
    # The kernel's route to the sink's network (fwd has it in its config).
    sh("ip", "-n", FWD, "route", "replace", "198.19.128.0/24", "via", "198.19.0.2")
    # The sink drops everything in XDP, neighbour probes included: pin the neighbours.
    sh("ip", "-n", FWD, "neigh", "replace", "198.19.0.2", "lladdr", SMAC, "dev", IF_B, "nud", "permanent")
    sh("ip", "-n", GEN, "neigh", "replace", "198.18.0.1", "lladdr", AMAC, "dev", IF_G, "nud", "permanent")


def rule_src(i):
    """Rule i's source: 198.18.128.0/17 host addresses (never the generator's 198.18.0.2)."""
    return f"198.18.{128 + (i >> 8) % 128}.{i & 255}", 1000 + (i >> 15)


def iptables_rules(n):
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f"-A FORWARD -s {a}/32 -p udp --dport {p} -j DROP" for a, p in map(rule_src, range(n))]
    return "\n".join(lines + ["COMMIT", ""])


def nft_rules(n, as_set):
    out = ["flush ruleset", "table ip bench {"]
    if as_set and n:
        out.append("  set deny { type ipv4_addr . inet_service; flags interval;")
        out.append("    elements = { " + ", ".join(f"{a} . {p}" for a, p in map(rule_src, range(n))) + " } }")
    out.append("  chain forward { type filter hook forward priority 0; policy accept;")
    if as_set and n:
        out.append("    ip saddr . udp dport @deny drop")
    elif n:
        out += [f"    ip saddr {a} udp dport {p} drop" for a, p in map(rule_src, range(n))]
    return "\n".join(out + ["  }", "}", ""])


class Linux:
    def __init__(self, kind):
        self.kind = kind

    def up(self, n):
        napi_threaded(True)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=FWD)
        if self.kind == "iptables":
            sh("iptables-legacy-restore", ns=FWD, input=iptables_rules(n))
        else:
            sh("nft", "-f", "-", ns=FWD, input=nft_rules(n, self.kind == "nft-set"))

    def down(self):
        sh("sysctl", "-qw", "net.ipv4.ip_forward=0", ns=FWD)
        sh("iptables-legacy", "-F", "FORWARD", ns=FWD, check=False)
        sh("nft", "flush", "ruleset", ns=FWD, check=False)


FWD_RULES_PROBE = """
[chains.FORWARD]
policy = "ACCEPT"
rules = [ { src = "198.18.7.0/24", proto = "udp", dport = "1000", action = "DROP" } ]
"""


def fwd_config(n, with_rules):
    cfg = f"""# generated by scripts/bench.sh
[[ports]]
interface = "{IF_A}"
queues = [0]
[[ports]]
interface = "{IF_B}"
queues = [0]
[[routes]]
prefix = "198.19.128.0/24"
via = "198.19.0.2"
[[neighbours]]
address = "198.19.0.2"
mac = "{SMAC}"
interface = "{IF_B}"
[workers]
cores = [{FWD_CORE}]
ring_size = 2048
# A forwarding core of its own spins, as DPDK's lcores do: no poll(2) sleeps.
idle_spins = 0
[control]
socket = "{FWD_SOCK}"
"""
    if with_rules:
        rules = ",\n".join(f'  {{ src = "{a}/32", proto = "udp", dport = "{p}", action = "DROP" }}'
                           for a, p in map(rule_src, range(n)))
        cfg += f'\n[chains.FORWARD]\npolicy = "ACCEPT"\nrules = [\n{rules}\n]\n'
    path = os.path.join(OUT, f"fwd-{n}.toml")
    open(path, "w").write(cfg)
    return path


def fwd_supports_rules():
    path = fwd_config(0, False)
    open(path, "a").write(FWD_RULES_PROBE)
    r = subprocess.run([f"{B}/fwd", "check", "-c", path], capture_output=True, text=True)
    return r.returncode == 0, (r.stderr or r.stdout).strip()


class Fwd:
    kind = "fwd"

    def __init__(self, with_rules):
        self.with_rules, self.proc, self.mode = with_rules, None, "?"

    def up(self, n):
        self.start(fwd_config(n, self.with_rules and n > 0), n)

    def start(self, path, tag):
        napi_threaded(False)
        self.log = open(os.path.join(OUT, f"fwd-{tag}.log"), "w")
        self.proc = subprocess.Popen(["ip", "netns", "exec", FWD, f"{B}/fwd", "run", "-c", path,
                                      "--stats-file", os.path.join(OUT, f"fwd-{tag}-stats.json")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        time.sleep(2.0)
        if self.proc.poll() is not None:
            raise RuntimeError(f"fwd exited at start: {open(self.log.name).read()[-500:]}")
        global WORK_NS
        WORK_NS = self.busy_ns

    @staticmethod
    def busy_ns():
        r = subprocess.run([f"{B}/fwd", "stats", "--json", "-s", FWD_SOCK], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"fwd stats: {r.stderr.strip()}")
        return json.loads(r.stdout)["events"].get("busy_ns", 0)

    def down(self):
        global WORK_NS
        WORK_NS = None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill(); self.proc.wait()
        self.log.close()
        text = open(self.log.name).read()
        self.mode = "; ".join(sorted(set(re.findall(r"(?:copy|zero-copy|native|generic)[\w -]*mode", text)))) or "?"


class Testpmd:
    kind = "testpmd"

    def up(self, n):
        napi_threaded(False)
        self.log = open(os.path.join(OUT, "testpmd.log"), "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", FWD, "dpdk-testpmd", "-l", f"{GEN_CORE},{FWD_CORE}", "--main-lcore", str(GEN_CORE),
             # --no-huge runs in legacy memory mode, which --in-memory refuses: a
             # file prefix of its own keeps its runtime files apart instead.
             "--no-pci", "--no-huge", "-m", "1024", "--file-prefix", f"fwd-bench-{P}",
             f"--vdev=net_af_xdp0,iface={IF_A}", f"--vdev=net_af_xdp1,iface={IF_B}",
             "--", "--forward-mode=io", "--auto-start", "--stats-period", "5"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        time.sleep(4.0)
        if self.proc.poll() is not None:
            raise RuntimeError(f"testpmd exited at start: {open(self.log.name).read()[-400:]}")

    def down(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill(); self.proc.wait()
        self.log.close()


# ---- stateful: connection tracking on both sides --------------------------------------
#
# One ruleset, the shape of configs/firewall.toml: FORWARD policy DROP, replies
# (ESTABLISHED,RELATED) accepted, INVALID dropped, NEW accepted outbound only. Linux
# gets it with iptables-legacy-restore, fwd the same text through `fwd import
# iptables-save`. The generator's flows come from 198.18.64.0/18, routed via the
# generator; both tables are sized for 4M connections (Linux: nf_conntrack_max and
# hashsize, global settings that are restored at the end).

CT_SRC = "198.18.64.1"
CT_MAX = 1 << 22
FRESH_FLOWS = (1 << 26) - 4096   # 16383 addresses x 4096 ports: new connections never repeat
FLOWS = [int(x) for x in A.flows.split()] if A.flows else ([1000, 100000] if A.quick else [1000, 1000000])
ESTABLISH_PPS = 100000           # the set-up passes: below every system's max rate
SETUP_REPS = 2 if A.quick else 5 # paired max-rate trials for the set-up cost


def iptables_stateful():
    return "\n".join([
        "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD -m conntrack --ctstate INVALID -j DROP",
        f"-A FORWARD -i {IF_A} -o {IF_B} -p udp -m udp --dport 9 -m conntrack --ctstate NEW -j ACCEPT",
        "COMMIT", ""])


class KernelCt:
    """Global conntrack sizing for the run; the old values come back at the end."""
    KNOBS = {"/proc/sys/net/netfilter/nf_conntrack_max": CT_MAX,
             "/sys/module/nf_conntrack/parameters/hashsize": CT_MAX // 2}

    def __enter__(self):
        self.saved = {k: open(k).read().strip() for k in self.KNOBS}
        for k, v in self.KNOBS.items():
            open(k, "w").write(str(v))
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            open(k, "w").write(v)


class LinuxCt(Linux):
    kind = "iptables"

    def __init__(self):
        super().__init__("iptables")

    def up(self, n):
        napi_threaded(True)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=FWD)
        sh("iptables-legacy-restore", ns=FWD, input=iptables_stateful())
        self.flush()

    def flush(self):
        sh("conntrack", "-F", ns=FWD, check=False)

    def table(self):
        out = sh("sh", "-c", "wc -l < /proc/net/nf_conntrack; grep -c UNREPLIED /proc/net/nf_conntrack || true", ns=FWD)
        total, unreplied = (int(x) for x in out.split())
        return {"entries": total, "replied": total - unreplied}


class FwdCt(Fwd):
    def __init__(self):
        super().__init__(True)

    def config(self, n):
        base = fwd_config(0, False)
        open(base, "a").write(f"""
[[routes]]
prefix = "198.18.64.0/18"
via = "198.18.0.2"
[[neighbours]]
address = "198.18.0.2"
mac = "{GMAC}"
interface = "{IF_A}"
[conntrack]
max_entries = {CT_MAX}
""")
        dump = os.path.join(OUT, "stateful.rules")
        open(dump, "w").write(iptables_stateful())
        r = subprocess.run([f"{B}/fwd", "import", "iptables-save", dump, "--base", base],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"fwd import iptables-save: {r.stderr.strip()}")
        path = os.path.join(OUT, "fwd-ct.toml")
        open(path, "w").write(r.stdout)
        return path

    def up(self, n):
        self.path = self.config(n)
        self.start(self.path, "ct")

    def flush(self):
        self.down()
        self.start(self.path, "ct")

    def table(self):
        r = subprocess.run([f"{B}/fwd", "conntrack", "--count", "--json", "-s", FWD_SOCK],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"fwd conntrack: {r.stderr.strip()}")
        d = json.loads(r.stdout)
        return {"entries": d["entries"], "replied": d["entries"] - d["counts"].get("unreplied", 0)}


def blast(ns, ifname, dst_mac, args, count, sink_ns, sink_if):
    """`count` frames at ESTABLISH_PPS with a sink dropping them at the far end;
    returns what the sink counted."""
    sf = os.path.join(OUT, "blast-sink.json")
    secs = count / ESTABLISH_PPS + 1.0
    sink = subprocess.Popen(["ip", "netns", "exec", sink_ns, f"{B}/sink", "-i", sink_if, "--engine", "xdp",
                             "--duration", str(secs + 2.0), "--quiet", "--json", sf, "--core", str(GEN_CORE)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    sh(f"{B}/pktgen", "-i", ifname, "--engine", "afxdp", "--dst-mac", dst_mac, *args, "--size", "64",
       "--count", str(count), "--rate", str(ESTABLISH_PPS), "--duration", str(secs + 1.0),
       "--core", str(GEN_CORE), "--quiet", "--json", os.path.join(OUT, "blast-gen.json"), ns=ns)
    _, err = sink.communicate()
    if sink.returncode != 0:
        raise RuntimeError(f"sink failed: {err.strip()}")
    return json.load(open(sf))["seq"]["unique"]


def establish(sysobj, n):
    """n client flows out through the forwarder, then one reply to each from the
    sink's side: n connections that have seen a reply (UDP's ESTABLISHED). A flow
    whose packet a system dropped gets another round (at most three)."""
    for round in range(1, 4):
        out = blast(GEN, IF_G, AMAC, ["--src", CT_SRC, "--dst", "198.19.128.1", "--flows", str(n)], n, SINK, IF_S)
        back = blast(SINK, IF_S, BMAC, ["--src", "198.19.128.1", "--sport", "9", "--dst", CT_SRC,
                                        "--dport", "1024", "--vary", "dst", "--flows", str(n)], n, GEN, IF_G)
        t = sysobj.table()
        log(f"  {n} flows, round {round}: {out} out, {back} replies back; "
            f"table {t['entries']} entries, {t['replied']} replied")
        if t["replied"] >= 0.999 * n:
            return t
    raise RuntimeError(f"only {t['replied']} of {n} connections established after 3 rounds")


def setup_cost(name, sysobj):
    """What setting a connection up costs over forwarding a packet of a known flow:
    paired max-rate trials, each from an empty table, one with 1000 flows cycled
    (after their first packets, lookups that hit) and one where every frame opens a
    new connection. At max rate the forwarding core is saturated, so CPU ns per
    packet is the cost of a packet; the median of the paired differences is the
    set-up cost, the forwarding path's fixed costs taken out."""
    known, fresh = Traffic(1000, CT_SRC), Traffic(FRESH_FLOWS, CT_SRC, fresh=True)
    pairs = []
    for rep in range(SETUP_REPS):
        progress(f"{name} set-up cost: pair {rep + 1} of {SETUP_REPS}")
        sysobj.flush()
        k = trial("afxdp", None, label=f"{name} setup known", traffic=known)
        sysobj.flush()
        f = trial("afxdp", None, label=f"{name} setup new", traffic=fresh)
        pairs.append((k["cpu_ns_per_pkt"], f["cpu_ns_per_pkt"], k["forwarded_pps"], f["forwarded_pps"]))
    diffs = sorted(f - k for k, f, _, _ in pairs)
    med = diffs[len(diffs) // 2]
    log(f"{name}: set-up cost {med:.0f} ns per connection (pairs: "
        + ", ".join(f"{k:.0f}->{f:.0f}" for k, f, _, _ in pairs) + ")")
    return {"system": name, "setup_ns": med, "pairs": pairs}


def stateful_main(report):
    sh("ip", "-n", FWD, "route", "replace", "198.18.64.0/18", "via", "198.18.0.2")
    sh("ip", "-n", FWD, "neigh", "replace", "198.18.0.2", "lladdr", GMAC, "dev", IF_A, "nud", "permanent")
    report["stateful"], report["setup_cost"] = [], []
    with KernelCt():
        for name, mk in (("fwd", FwdCt), ("linux-iptables", LinuxCt)):
            for n in FLOWS:
                sysobj = mk()
                try:
                    sysobj.up(0)
                    t0 = establish(sysobj, n)
                    row = measure(name, "afxdp", n, traffic=Traffic(n, CT_SRC),
                                  tag=f"{name} established @ {n} flows", inspect=sysobj.table)
                    row.update(kind="established", flows=n, table_before=t0)
                    report["stateful"].append(row)
                except Exception as e:
                    log(f"{name} established @ {n}: failed: {e}")
                    report["skipped"].append({"system": name, "flows": n, "why": str(e)[:300]})
                finally:
                    sysobj.down()
            sysobj = mk()
            try:
                sysobj.up(0)
                report["setup_cost"].append(setup_cost(name, sysobj))
                row = measure(name, "afxdp", 0, traffic=Traffic(FRESH_FLOWS, CT_SRC, fresh=True),
                              reset=sysobj.flush, tag=f"{name} new connections", inspect=sysobj.table)
                row.update(kind="new", flows=None)
                report["stateful"].append(row)
            except Exception as e:
                log(f"{name} new connections: failed: {e}")
                report["skipped"].append({"system": name, "kind": "new", "why": str(e)[:300]})
            finally:
                sysobj.down()


def machine():
    cpu = sh("sh", "-c", "lscpu | sed -n 's/^Model name: *//p'").strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "iptables": sh("iptables-legacy", "-V").strip(), "nft": sh("nft", "-v").strip()}


def main():
    setup_common()
    report = {"machine": machine(), "frame_size": 64, "trial_secs": TRIAL, "resolution": RES,
              "quick": A.quick, "skipped": [], "rows": [], "capacity": {}}
    log(f"bench: {report['machine']['cpu']}, {report['machine']['cores']} cores, kernel {report['machine']['kernel']}; "
        f"trials {TRIAL} s, search resolution {RES * 100:g}%")

    # Generator + sink alone, back to back (the sink on the forwarder's ingress veth):
    # what they handle is the ceiling any system can show here.
    global IF_S, SINK
    saved = IF_S, SINK
    IF_S, SINK = IF_A, FWD
    for eng in ("live", "afxdp"):
        progress(f"generator+sink alone ({eng})")
        r = trial(eng, None, label=f"capacity {eng}")
        report["capacity"][eng] = r["forwarded_pps"] / 1e6
        log(f"generator ({eng}) -> sink alone: {r['forwarded_pps'] / 1e6:.3f} Mpps")
    IF_S, SINK = saved

    (stateful_main if A.stateful else rules_main)(report)
    json.dump(report, open(os.path.join(OUT, "report.json"), "w"), indent=2)
    subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "report.py"), OUT], check=True)


def rules_main(report):
    """The rules table: fwd, Linux (iptables, nft, nft set) and testpmd at each rule count."""
    ok, why = fwd_supports_rules()
    if not ok:
        log(f"fwd: rules skipped: `fwd check` refuses a [chains.FORWARD] section ({why.splitlines()[0] if why else '?'}); "
            f"the rule engine is not merged yet")
        report["skipped"].append({"system": "fwd", "rules": [n for n in FWD_RULES if n], "why":
                                  "fwd has no rule engine yet (fwd check refuses [chains.FORWARD])"})
    plan = []
    for n in (FWD_RULES if ok else [0]):
        plan.append(("fwd", Fwd(ok), "live", n))
    plan.append(("fwd", Fwd(ok), "afxdp", 0))
    for n in RULES:
        plan.append(("linux-iptables", Linux("iptables"), "afxdp", n))
        plan.append(("linux-nft", Linux("nft"), "afxdp", n))
        if n and not A.quick or n == max(RULES):
            plan.append(("linux-nft-set", Linux("nft-set"), "afxdp", n))
    if subprocess.run(["sh", "-c", "command -v dpdk-testpmd"], capture_output=True).returncode == 0:
        plan.append(("dpdk-testpmd", Testpmd(), "live", 0))
    else:
        report["skipped"].append({"system": "dpdk-testpmd", "why": "dpdk-testpmd not installed"})
    for name, sysobj, eng, n in plan:
        try:
            sysobj.up(n)
        except Exception as e:
            log(f"{name} @ {n}: skipped: {e}")
            report["skipped"].append({"system": name, "rules": n, "why": str(e)[:300]})
            continue
        try:
            row = measure(name, eng, n)
        except Exception as e:
            log(f"{name} @ {n}: failed: {e}")
            report["skipped"].append({"system": name, "rules": n, "why": str(e)[:300]})
            row = None
        finally:
            sysobj.down()
        if row:
            if isinstance(sysobj, Fwd):
                row["mode"] = sysobj.mode
            report["rows"].append(row)


main()
