"""scripts/bench density: how many idle pods one node holds, started from a template one after another.

One daemon (release build), handler `start = "template"`, 256 MiB guests, pool_size 1. Pods are
started one after another up to N (default 100); at each checkpoint (10, 50, N) it measures the
total PSS of every QEMU process of the daemon plus the daemon itself (smaps_rollup), PSS per pod,
RunPodSandbox p50/p99 of the pods started since the last checkpoint, and the node's idle CPU over
5 s. The reference, in the same run: 10 pods booted cold (same size). Then every pod is stopped and
removed, and what is left (QEMU processes, VM directories, taps) is counted. A PNG plots PSS per pod
and start latency against the pod count (gnuplot).
"""
import json, os, statistics, subprocess, sys, tempfile, time

target = int(sys.argv[1]) if len(sys.argv) > 1 else 100
guest = os.environ["COCOON_GUEST_DIR"]
bindir = os.environ["COCOON_BIN"]
out_png = os.environ.get("COCOON_BENCH_PNG", "bench-density.png")
checkpoints = sorted({c for c in (10, 50, target) if c <= target})
# COCOON_BENCH_KSM=SECONDS: at the last checkpoint (and for the cold reference), turn the host's KSM on
# for that long (QEMU marks guest RAM mergeable: mem-merge, its default) and measure again.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_peer  # noqa: E402 (beside this script)
ksm_seconds = int(os.environ.get("COCOON_BENCH_KSM", "0"))
KSM = "/sys/kernel/mm/ksm"
COLD_REF = min(10, target)


def vm_pids(_marker=None):
    """Every Cocoon VM process on the host (QEMU renames itself cocoon-ID): run the benchmark alone."""
    pids = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            comm = open(f"/proc/{e}/comm").read().strip()
            state = open(f"/proc/{e}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if comm.startswith("cocoon-") and state != "Z":
            pids.append(int(e))
    return pids


def cpu_idle(seconds=5.0):
    def snap():
        v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return v[3] + v[4], sum(v)
    i0, t0 = snap()
    time.sleep(seconds)
    i1, t1 = snap()
    return 100.0 * (i1 - i0) / max(1, t1 - t0)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


root = tempfile.mkdtemp(prefix="cocoon-density-")
sock = f"{root}/run/cocoon.sock"
with open(f"{root}/config.toml", "w") as f:
    f.write(f'state_root = "{root}/state"\nrun_dir = "{root}/run"\n')
    for name, start, pool in (("tpl", "template", 1), ("cold", "cold", 0)):
        f.write(f'[handlers.{name}]\nbackend = "qemu"\nkernel = "{guest}/vmlinux"\ninitrd = "{guest}/initrd.cpio"\n'
                f'memory_mib = 256\nvcpus = 1\naccel = "tcg"\nstart = "{start}"\npool_size = {pool}\n')
daemon = subprocess.Popen([f"{bindir}/cocoond", "--config", f"{root}/config.toml", "--log-level", "warning"])


def ctl(*args):
    return subprocess.run([f"{bindir}/cocoonctl", args[0], "-r", f"unix://{sock}", *args[1:]], check=True,
                          capture_output=True, text=True).stdout


for _ in range(500):
    if os.path.exists(sock):
        break
    time.sleep(0.02)


def templates():
    listed = json.loads(ctl("info"))["info"]["templates"]
    return {t["handler"]: t for t in (json.loads(listed) if isinstance(listed, str) else listed)}


def run_pod(name, handler):
    spec = f"{root}/{name}.json"
    with open(spec, "w") as f:
        json.dump({"metadata": {"name": name, "namespace": "density", "uid": name}}, f)
    t0 = time.monotonic()
    pod = ctl("runp", "--runtime", handler, spec).strip()
    return pod, time.monotonic() - t0


def measure(n, lat, from_template=True):
    time.sleep(3.0)  # the last pods settle
    vms = vm_pids(f"{root}/run/")
    qemu = sum(bench_peer.pss_kib(p) for p in vms)
    own = bench_peer.pss_kib(daemon.pid)
    idle = cpu_idle()
    # The template's RAM memfd (shmem held by cocoond, in no process's RSS): counted whole, an upper
    # bound (the pages a clone maps are in its PSS already).
    memfd = (templates()["tpl"].get("ram_resident_mib") or 0) if from_template else 0
    return {"pods": n, "vms": len(vms), "qemu_pss_mib": qemu / 1024, "daemon_pss_mib": own / 1024,
            "template_memfd_mib": memfd, "pss_per_pod_mib": (qemu + own) / 1024 / n,
            "per_pod_with_memfd_mib": ((qemu + own) / 1024 + memfd) / n, "runp_p50_s": statistics.median(lat),
            "runp_p99_s": pct(lat, 99), "cpu_idle_pct": idle}


def with_ksm(n, lat, from_template=True):
    """The same measure after KSM has run for `ksm_seconds` (scanning fast), then KSM off and unmerged."""
    saved = {k: open(f"{KSM}/{k}").read().strip() for k in ("run", "pages_to_scan", "sleep_millisecs")}
    try:
        open(f"{KSM}/pages_to_scan", "w").write("20000")
        open(f"{KSM}/sleep_millisecs", "w").write("20")
        open(f"{KSM}/run", "w").write("1")
        time.sleep(ksm_seconds)
        row = measure(n, lat, from_template)
        row["ksm_pages_sharing"] = int(open(f"{KSM}/pages_sharing").read())
        row["ksm_pages_shared"] = int(open(f"{KSM}/pages_shared").read())
        return row
    finally:
        open(f"{KSM}/run", "w").write("2")  # unmerge everything, then restore the host's setting
        for k, v in saved.items():
            open(f"{KSM}/{k}", "w").write(v)


rows, cold_row, leftovers = [], None, {}
ksm_cold, ksm_rows = None, []
pods = []
try:
    deadline = time.monotonic() + 300
    while not (templates()["tpl"]["ready"] and templates()["tpl"]["pool_ready"] >= 1):
        if time.monotonic() > deadline:
            raise SystemExit(f"template not ready: {templates()}")
        time.sleep(0.2)
    built = templates()["tpl"]
    # Reference: cold boots of the same size, measured alone.
    cold, lat = [], []
    for i in range(COLD_REF):
        pod, s = run_pod(f"cold{i}", "cold")
        cold.append(pod)
        lat.append(s)
    cold_row = measure(COLD_REF, lat, from_template=False)
    if ksm_seconds and os.access(f"{KSM}/run", os.W_OK):
        ksm_cold = with_ksm(COLD_REF, lat, from_template=False)
    for pod in cold:
        ctl("stopp", pod)
        ctl("rmp", pod)
    lat, starts = [], {}
    for i in range(1, target + 1):
        pod, s = run_pod(f"pod{i}", "tpl")
        pods.append(pod)
        lat.append(s)
        mode = json.loads(ctl("inspectp", pod))["info"]["info"]["vm"]["start"]
        starts[mode] = starts.get(mode, 0) + 1
        if i in checkpoints:
            row = measure(i, lat)
            row["starts"] = dict(starts)
            rows.append(row)
            print(f"{i} pods: {json.dumps(row)}", flush=True)
            if i == target and ksm_seconds and os.access(f"{KSM}/run", os.W_OK):
                ksm_rows.append(with_ksm(i, lat))
                print(f"{i} pods with KSM: {json.dumps(ksm_rows[-1])}", flush=True)
            lat = []
    t0 = time.monotonic()
    for pod in pods:
        ctl("stopp", pod)
        ctl("rmp", pod)
    teardown = time.monotonic() - t0
    pods = []
    time.sleep(1.0)
    vms_left = vm_pids(f"{root}/run/")
    leftovers = {
        "qemu_processes": len(vms_left) - templates()["tpl"]["pool_ready"],
        "vm_dirs": len([d for d in os.listdir(f"{root}/run/vms") if not d.startswith("pool")])
        if os.path.isdir(f"{root}/run/vms") else 0,
        "sandbox_dirs": len(os.listdir(f"{root}/state/sandboxes")) if os.path.isdir(f"{root}/state/sandboxes") else 0,
        "taps": len([l for l in os.listdir("/sys/class/net") if l.startswith("cc")]),
        "netns": len([n for n in os.listdir("/var/run/netns") if n.startswith("cocoon-")])
        if os.path.isdir("/var/run/netns") else 0,
        "teardown_s": teardown,
    }
finally:
    for pod in pods:  # an interrupted run still removes what it started
        for call in ("stopp", "rmp"):
            subprocess.run([f"{bindir}/cocoonctl", call, "-r", f"unix://{sock}", pod], capture_output=True)
    daemon.terminate()
    daemon.wait()
    time.sleep(0.5)
    after_stop = len(vm_pids(f"{root}/run/"))
    subprocess.run(["rm", "-rf", root])

print(f"\nscripts/bench density: up to {target} idle pods from a template (TCG, 1 vCPU, 256 MiB guests, pool 1)")
print(f"template: built in {built['build_ms'] / 1000:.2f}s, {built['ram_data_mib']} MiB of its 256 MiB RAM is data")
print(f"{'pods':>9} {'VMs':>4} {'QEMU PSS':>10} {'daemon':>8} {'memfd':>7} {'PSS/pod':>9} {'+memfd':>8} "
      f"{'runp p50':>9} {'runp p99':>9} {'CPU idle':>9}  starts")
def line(label, r, starts):
    print(f"{label:>9} {r['vms']:>4} {r['qemu_pss_mib']:8.1f}Mi {r['daemon_pss_mib']:6.1f}Mi "
          f"{r.get('template_memfd_mib', 0):5}Mi {r['pss_per_pod_mib']:7.1f}Mi "
          f"{r.get('per_pod_with_memfd_mib', r['pss_per_pod_mib']):6.1f}Mi "
          f"{r['runp_p50_s']:8.3f}s {r['runp_p99_s']:8.3f}s {r['cpu_idle_pct']:8.1f}%  {starts}")


if cold_row:
    line(f"{COLD_REF} cold", cold_row, {"cold": COLD_REF})
for r in rows:
    line(str(r["pods"]), r, r["starts"])
if ksm_cold:
    line(f"{COLD_REF} c+ksm", ksm_cold, f"KSM {ksm_seconds}s: {ksm_cold['ksm_pages_sharing']} pages sharing")
for r in ksm_rows:
    line(f"{r['pods']} +ksm", r, f"KSM {ksm_seconds}s: {r['ksm_pages_sharing']} pages sharing")
if cold_row and rows:
    first = rows[0]
    print(f"PSS per pod at {first['pods']} pods: template {first['pss_per_pod_mib']:.1f} MiB vs cold "
          f"{cold_row['pss_per_pod_mib']:.1f} MiB ({first['pss_per_pod_mib'] / cold_row['pss_per_pod_mib']:.2f}x); "
          f"RunPodSandbox p50 {first['runp_p50_s']:.3f}s vs {cold_row['runp_p50_s']:.3f}s "
          f"({first['runp_p50_s'] / cold_row['runp_p50_s']:.2f}x)")
print("memfd: the template's RAM (shmem cocoond holds, in no process's PSS), counted whole in +memfd per pod "
      "(an upper bound: pages a clone maps are in its PSS too)")
print("target: 100 idle pods at once with <= 64 MiB PSS per pod; stop+remove of all leaves nothing")
print(f"left after stop+remove of all: {json.dumps(leftovers)}; QEMU processes after the daemon stopped: {after_stop}")
print("raw:", json.dumps({"cold": cold_row, "template": rows, "ksm_cold": ksm_cold, "ksm_template": ksm_rows}))

if rows:
    data = f"{out_png}.dat"
    with open(data, "w") as f:
        for r in rows:
            f.write(f"{r['pods']} {r['pss_per_pod_mib']:.2f} {r['runp_p50_s'] * 1000:.1f} {r['runp_p99_s'] * 1000:.1f}\n")
    script = f"""set terminal png size 900,500
set output '{out_png}'
set title 'Cocoon: idle pods from a template (TCG, 256 MiB guests)'
set xlabel 'pods running'
set ylabel 'PSS per pod (MiB)'
set y2label 'RunPodSandbox (ms)'
set y2tics
set ytics nomirror
set key left top
plot '{data}' using 1:2 with linespoints title 'PSS per pod (MiB)', \\
     '{data}' using 1:3 axes x1y2 with linespoints title 'RunPodSandbox p50 (ms)', \\
     '{data}' using 1:4 axes x1y2 with linespoints title 'RunPodSandbox p99 (ms)'
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    print(f"plot: {out_png}" if r.returncode == 0 else f"plot failed: {r.stderr.strip()}")
