#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

    report.py cpu PID                 CPU ticks (utime+stime+cutime+cstime) of PID's process tree
    report.py mem PID FIELD           sum of FIELD (VmHWM, VmRSS) in KiB over PID's process tree
    report.py churn FILE RATE A B     rewrite FILE atomically RATE times/s, alternating the
                                      contents of files A and B, until SIGTERM; prints the count
    report.py report RAWDIR OUT.md    parse wrk outputs in RAWDIR, print the table, write OUT.md
"""
import os
import re
import signal
import statistics
import sys
import time

PROXIES = ["vane", "haproxy", "nginx"]
# vane and nginx again, with their access logs on (scenario a only).
LOGGING = ["vane_log", "nginx_log"]
# vane and nginx again, with a regex rewrite and two header changes (scenario a only).
TRANSFORMS = ["vane_xform", "nginx_xform"]
# vane_xform's own process, asked for a host without transforms.
SAME_PROCESS_PLAIN = "vane_xplain"


# ---------------------------------------------------------------- /proc helpers

def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # the command name may hold spaces: split after the closing parenthesis
    rest = data[data.rindex(")") + 2:].split()
    return rest  # rest[0] is field 3 (state)


def tree(root):
    """root and all its descendants, from the ppid field of /proc/*/stat."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat(entry)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [int(root)]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(root):
    total = 0
    for pid in tree(root):
        try:
            f = _stat(pid)
        except OSError:
            continue
        # fields 14..17: utime stime cutime cstime -> rest[11..14]
        total += sum(int(x) for x in f[11:15])
    return total


def mem_kib(root, field):
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


# ---------------------------------------------------------------- churn writer

def churn(path, rate, sources):
    contents = []
    for source in sources:
        with open(source) as f:
            contents.append(f.read())
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.tmp")  # hidden: vane skips it
    count = 0
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    interval = 1.0 / rate
    start = time.monotonic()
    while not stop:
        with open(tmp, "w") as f:
            f.write(contents[count % 2])
        os.replace(tmp, path)
        count += 1
        delay = start + count * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - start
    print(f"{count} {elapsed:.2f}")


# ---------------------------------------------------------------- wrk parsing

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _dur(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(text):
    r = {"non2xx": 0, "sockerr": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB|TB)", text)
    r["mibps"] = float(m.group(1)) * SIZES[m.group(2)] / 1024**2 if m else float("nan")
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        r[f"p{pct}"] = _dur(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        r["sockerr"] = sum(int(x) for x in m.groups())
    return r


def load_runs(raw, scenario, proxy):
    runs = []
    for name in sorted(os.listdir(raw)):
        m = re.fullmatch(rf"{scenario}-{proxy}-(\d+)\.wrk", name)
        if not m:
            continue
        with open(os.path.join(raw, name)) as f:
            run = parse_wrk(f.read())
        cpu = os.path.join(raw, name[:-4] + ".cpu")
        if os.path.exists(cpu):
            with open(cpu) as f:
                ticks = int(f.read().split()[0])
            run["cpu_us"] = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(run["requests"], 1)
        runs.append(run)
    return runs


def median(runs, key):
    values = [r[key] for r in runs if key in r and r[key] == r[key]]
    return statistics.median(values) if values else float("nan")


def read_kv(path):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    out[k] = v
    return out


def fmt(value, spec):
    return "n/a" if value != value else format(value, spec)


def ratio(a, b):
    if a != a or b != b or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def feature_rows(med, runs, label, feature, rps=False):
    """Scenario a's rows for vane and nginx run with a feature on: CPU per request (and
    requests/s), and the CPU the feature adds over the same proxy without it."""
    vane, nginx = (p for p in runs)
    vc, nc = (median(runs[p], "cpu_us") for p in (vane, nginx))
    v, n = med["vane"]["a_cpu"], med["nginx"]["a_cpu"]
    rows = []
    if rps:
        vr, nr = (median(runs[p], "rps") for p in (vane, nginx))
        rows.append(
            f"| a. {label}: requests/s | {fmt(vr, ',.0f')} | | {fmt(nr, ',.0f')} | {ratio(vr, nr)} | |"
        )
    rows.append(
        f"| a. {label}: CPU per request, µs | {fmt(vc, '.1f')} | | {fmt(nc, '.1f')} | {ratio(vc, nc)} | |"
    )
    rows.append(
        f"| a. CPU {feature} adds per request, µs | {fmt(vc - v, '+.1f')} | | {fmt(nc - n, '+.1f')} | | |"
    )
    return rows


def report(raw, out_path):
    meta = read_kv(os.path.join(raw, "meta"))
    mem = read_kv(os.path.join(raw, "mem"))
    med = {}
    for proxy in PROXIES:
        a = load_runs(raw, "a", proxy)
        b = load_runs(raw, "b", proxy)
        c = load_runs(raw, "c", proxy)
        med[proxy] = {
            "a_rps": median(a, "rps"),
            "a_p50": median(a, "p50") * 1e3,
            "a_p99": median(a, "p99") * 1e3,
            "a_cpu": median(a, "cpu_us"),
            "b_mibps": median(b, "mibps"),
            "c_rps": median(c, "rps"),
            "rss_peak": int(mem.get(f"{proxy}_hwm", "0")) / 1024 or float("nan"),
            "errors": sum(r["non2xx"] + r["sockerr"] for r in a + b + c),
            "rounds": (len(a), len(b), len(c)),
        }

    rows = [
        ("a. small GET, 64 conns: requests/s (higher is better)", "a_rps", ",.0f", True),
        ("a. p50 latency, ms (lower is better)", "a_p50", ".3f", False),
        ("a. p99 latency, ms (lower is better)", "a_p99", ".3f", False),
        ("a. proxy CPU per request, µs (lower is better)", "a_cpu", ".1f", False),
        ("b. 1 MiB responses, 8 conns: MiB/s (higher is better)", "b_mibps", ",.0f", True),
        ("c. new connection per request, 16 conns: requests/s (higher is better)", "c_rps", ",.0f", True),
        ("d. peak RSS after a-c, MiB (lower is better)", "rss_peak", ".1f", False),
    ]
    lines = [
        "| metric | vane | haproxy | nginx | vane/nginx | vane/haproxy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, key, spec, _ in rows:
        v, h, n = (med[p][key] for p in PROXIES)
        lines.append(
            f"| {label} | {fmt(v, spec)} | {fmt(h, spec)} | {fmt(n, spec)} "
            f"| {ratio(v, n)} | {ratio(v, h)} |"
        )
    lines.append(
        "| errors in a-c (non-2xx + socket errors, all rounds) | "
        + " | ".join(str(med[p]["errors"]) for p in PROXIES)
        + " | | |"
    )
    idle = int(mem.get("vane_idle_rss", "0")) / 1024
    lines.append(f"| d. vane idle RSS right after start (MiB) | {idle:.1f} | | | | |")

    # a again with a feature on (vane's and nginx's), in the same rounds
    logged = {p: load_runs(raw, "a", p) for p in LOGGING}
    logging = read_kv(os.path.join(raw, "logging"))
    if all(logged.values()):
        lines += feature_rows(med, logged, "with the JSON access log on", "the access log", rps=True)
        lines.append(
            f"| a. access log lines written (all rounds, warm-up included) / dropped | "
            f"{logging.get('vane_log_lines', '?')} / {logging.get('vane_log_dropped', '?')} | | "
            f"{logging.get('nginx_log_lines', '?')} / 0 | | |"
        )
    transformed = {p: load_runs(raw, "a", p) for p in TRANSFORMS}
    if all(transformed.values()):
        lines += feature_rows(
            med, transformed, "with a regex rewrite and two header changes", "the transforms"
        )
        plain = load_runs(raw, "a", SAME_PROCESS_PLAIN)
        if plain:
            vt = median(transformed["vane_xform"], "cpu_us")
            vp = median(plain, "cpu_us")
            lines.append(
                f"| a. CPU the transforms add per request, same vane process, µs | {fmt(vt - vp, '+.1f')} | | | | |"
            )

    # e. churn
    e = load_runs(raw, "e", "vane")
    churn_lines = []
    if e:
        e_rps = median(e, "rps")
        # The baseline: vane without churn, in the same interleaved rounds.
        e0 = load_runs(raw, "e0", "vane")
        base = median(e0, "rps") if e0 else med["vane"]["a_rps"]
        drop = (1 - e_rps / base) * 100 if base else float("nan")
        non2xx = sum(r["non2xx"] for r in e)
        sockerr = sum(r["sockerr"] for r in e)
        churn = read_kv(os.path.join(raw, "churn"))
        lines.append(f"| e. churn: vane requests/s (median) | {fmt(e_rps, ',.0f')} | | | | |")
        lines.append(f"| e. churn: vane requests/s without churn, same rounds (median) | {fmt(base, ',.0f')} | | | | |")
        lines.append(f"| e. churn: throughput drop | {fmt(drop, '.1f')}% | | | | |")
        lines.append(f"| e. churn: non-2xx / socket errors (all rounds) | {non2xx} / {sockerr} | | | | |")
        lines.append(f"| e. churn: vane peak RSS after churn (MiB) | {int(churn.get('hwm', '0')) / 1024:.1f} | | | | |")
        churn_lines.append(
            f"- churn: {churn.get('writes', '?')} file rewrites in {churn.get('seconds', '?')} s "
            f"({churn.get('rate', '?')}/s requested) over {len(e)} rounds; vane published "
            f"{churn.get('swaps', '?')} routing tables meanwhile (generation counter of "
            "/debug/routes; vane debounces file events: 15 ms quiet, at most 250 ms under constant churn)."
        )
    else:
        lines.append("| e. churn | not run | | | | |")

    table = "\n".join(lines)
    print()
    print(table)
    print()
    for l in churn_lines:
        print(l)

    rounds = med["vane"]["rounds"]
    doc = [
        f"# vane vs HAProxy vs nginx, {meta.get('date', '?')}",
        "",
        "## Setup",
        "",
        f"- versions: {meta.get('vane_version', '?')}; {meta.get('nginx_version', '?')}; "
        f"{meta.get('haproxy_version', '?')}; {meta.get('wrk_version', '?')}",
        f"- machine: {meta.get('cores', '?')} cores ({meta.get('cpu_model', '?')}), "
        f"{meta.get('mem', '?')}, kernel {meta.get('kernel', '?')}",
        f"- proxy worker threads/processes: {meta.get('workers', '?')} each; origins: one nginx "
        "(worker_processes 1) on 127.0.0.2-4:18001, 100-byte body on /, 1 MiB file on /big",
        f"- rounds (interleaved vane, haproxy, nginx): a={rounds[0]}, b={rounds[1]}, c={rounds[2]}, "
        f"e={len(e)}; figures are medians over rounds",
        f"- a: `{meta.get('cmd_a', '?')}`; vane counts its traffic metrics in every run; the "
        "access-log rows run a second vane (`--access-log-format json`, stdout to a file) and a "
        "second nginx (a JSON `log_format`, `access_log` to a file, unbuffered as ingress-nginx "
        "has it) in the same rounds",
        f"- b: `{meta.get('cmd_b', '?')}`",
        f"- c: `{meta.get('cmd_c', '?')}`",
        f"- e: scenario a against vane while the manifests file is rewritten "
        f"{meta.get('churn_rate', '?')} times/s",
        "- CPU per request: utime+stime (children included) of the proxy's process tree from "
        "/proc/PID/stat, after minus before the wrk run, divided by the requests wrk completed "
        f"(clock tick {1e6 / os.sysconf('SC_CLK_TCK'):.0f} µs)",
        "- f (control-plane scale) and g (route propagation): not run (optional, skipped)",
        "",
        "## Results",
        "",
        table,
        "",
        *churn_lines,
        "",
        "## Notes",
        "",
        f"- load average before the run: {meta.get('load_before', '?')}; after: "
        f"{meta.get('load_after', '?')}",
        f"- other compilers (rustc/cargo/cc1 not started by this script) seen during the run: "
        f"{meta.get('foreign_builds', '?')}",
        "- wrk, the origins and the proxy share the same 2 cores, so every figure includes "
        "contention with the load generator and the origins; compare proxies, not absolutes.",
    ]
    extra = os.path.join(raw, "notes")
    if os.path.exists(extra):
        with open(extra) as f:
            doc += [f"- {l.strip()}" for l in f if l.strip()]
    with open(out_path, "w") as f:
        f.write("\n".join(doc) + "\n")
    print(f"\nwritten to {out_path}")


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "cpu":
        print(cpu_ticks(argv[2]))
    elif cmd == "mem":
        print(mem_kib(argv[2], argv[3]))
    elif cmd == "churn":
        churn(argv[2], float(argv[3]), argv[4:6])
    elif cmd == "report":
        report(argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
