"""scripts/bench native: a native pod (no VM) beside containerd 1.6 + runc, in the same run.

Both runtimes are driven by the same client (crictl, one process per call), on the same CNI conflist,
with the same busybox image: RunPodSandbox, CreateContainer + StartContainer, ExecSync `true`,
StopContainer (timeout 0) + RemoveContainer, and StopPodSandbox + RemovePodSandbox, the runtimes
taking turns in each run. Then the memory an idle pod with one sleeping container costs beyond the
container itself: Cocoon's pod agent and its cocoon-pause, against containerd's shim and its pause
(PSS from /proc/PID/smaps_rollup). Medians over RUNS runs.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
bindir = os.environ["COCOON_BIN"]
images = os.environ["COCOON_TEST_IMAGES"]
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
crictl_bin = os.environ.get("CRICTL") or os.path.join(os.path.dirname(repo), "shared/tools/crictl")
root = tempfile.mkdtemp(prefix="cocoon-bench-native-")
BRIDGE, SUBNET = "ccnat0", "10.216.0.0/22"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_peer

netdir = bench_peer.conflist(root, "cocoon-bench-native", BRIDGE, SUBNET)
CALLS = ("runp", "create+start", "exec true", "stop+rm", "stopp+rmp")


def run(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv[4:7])}: {r.stderr.strip()[-300:]}")
    return r.stdout.strip()


def timed(argv):
    t0 = time.monotonic()
    out = run(argv)
    return time.monotonic() - t0, out


def configs(name):
    pod, ctr = f"{root}/{name}-pod.json", f"{root}/{name}-ctr.json"
    os.makedirs(f"{root}/logs-{name}", exist_ok=True)
    with open(pod, "w") as f:
        json.dump({"metadata": {"name": "nat", "namespace": "bench", "uid": f"{name}-uid"},
                   "log_directory": f"{root}/logs-{name}"}, f)
    with open(ctr, "w") as f:
        json.dump({"metadata": {"name": "sleeper"}, "image": {"image": "cocoon.local/busybox:latest"},
                   "command": ["sleep", "100000"], "log_path": "sleeper.log"}, f)
    return pod, ctr


def one_run(crictl, name, times):
    pod, ctr = configs(name)
    t, pid = timed(crictl + ["runp", pod])
    times["runp"].append(t)
    t1, cid = timed(crictl + ["create", pid, ctr, pod])
    t2, _ = timed(crictl + ["start", cid])
    times["create+start"].append(t1 + t2)
    for _ in range(3):
        times["exec true"].append(timed(crictl + ["exec", "-s", cid, "true"])[0])
    t1, _ = timed(crictl + ["stop", "-t", "0", cid])
    t2, _ = timed(crictl + ["rm", cid])
    times["stop+rm"].append(t1 + t2)
    t1, _ = timed(crictl + ["stopp", pid])
    t2, _ = timed(crictl + ["rmp", pid])
    times["stopp+rmp"].append(t1 + t2)


def processes():
    """(pid, ppid, argv) of every process."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out.append((int(entry), ppid, [a.decode(errors="replace") for a in argv if a]))
    return out


def idle_overhead(crictl, name, is_ours):
    """PSS (KiB) of what an idle pod with one sleeping container adds beside the container."""
    pod, ctr = configs(name + "-idle")
    pid = run(crictl + ["runp", pod])
    cid = run(crictl + ["create", pid, ctr, pod])
    run(crictl + ["start", cid])
    time.sleep(3)
    procs = processes()
    if is_ours:
        agents = [p for p, _, a in procs if len(a) > 1 and a[0].endswith("cocoon-agent") and a[1] == "host"
                  and ("cocoon-" + pid[:12]) in a]
        mine = agents + [p for p, pp, a in procs if pp in agents and a and a[0].endswith("cocoon-pause")]
    else:
        shims = [p for p, _, a in procs if a and "containerd-shim" in a[0] and pid in a]
        mine = shims + [p for p, pp, a in procs if pp in shims and a and a[0].endswith("sleep") and "2147483647" in a]
    total = sum(bench_peer.pss_kib(p) for p in mine)
    run(crictl + ["stopp", pid])
    run(crictl + ["rmp", pid])
    return total, len(mine)


procs = []
ours = {c: [] for c in CALLS}
theirs = {c: [] for c in CALLS}
why = ""
try:
    sock = f"{root}/run/cocoon.sock"
    with open(f"{root}/config.toml", "w") as f:
        f.write(f'state_root = "{root}/state"\nrun_dir = "{root}/run"\ndefault_handler = "native"\n'
                f'[cni]\nconf_dir = "{netdir}"\n[handlers.native]\nbackend = "native"\n')
    daemon = subprocess.Popen([f"{bindir}/cocoond", "--config", f"{root}/config.toml", "--log-level", "warning"])
    procs.append(daemon)
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.02)
    run([f"{bindir}/cocoonctl", "image", "import", "-r", f"unix://{sock}", f"{images}/busybox",
         "--name", "cocoon.local/busybox:latest"])
    cocoon = [crictl_bin, "--runtime-endpoint", f"unix://{sock}", "--image-endpoint", f"unix://{sock}", "-t", "120s"]
    peer_argv, peer, why = bench_peer.start(root, netdir, images)
    if peer:
        procs.append(peer)
    for i in range(runs):
        one_run(cocoon, "cocoon", ours)
        if peer_argv:
            one_run(peer_argv, "containerd", theirs)
        print(f"run {i + 1}/{runs}", file=sys.stderr, flush=True)
    our_idle = idle_overhead(cocoon, "cocoon", True)
    their_idle = idle_overhead(peer_argv, "containerd", False) if peer_argv else None
finally:
    bench_peer.stop_all(procs)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)

med = statistics.median
print(f"\nnative pods (no VM) vs containerd 1.6 + runc, crictl per call, medians of {runs} runs")
print(f"{'':22} {'cocoon':>9} {'containerd':>11} {'ratio':>7}")
for c in CALLS:
    if theirs[c]:
        print(f"{c:22} {med(ours[c]) * 1000:7.0f}ms {med(theirs[c]) * 1000:9.0f}ms {med(ours[c]) / med(theirs[c]):6.2f}x")
    else:
        print(f"{c:22} {med(ours[c]) * 1000:7.0f}ms {'-':>11}")
print(f"{'idle pod overhead PSS':22} {our_idle[0] / 1024:6.1f}Mi", end="")
if their_idle:
    print(f" {their_idle[0] / 1024:8.1f}Mi {our_idle[0] / max(their_idle[0], 1):6.2f}x   "
          f"(agent + cocoon-pause: {our_idle[1]} processes; shim + pause: {their_idle[1]})")
else:
    print(f"   containerd skipped: {why}")
print("raw:", json.dumps({"cocoon": ours, "containerd": theirs, "idle_kib": [our_idle, their_idle]}))
