"""scripts/bench stats: the kubelet's node-wide stats calls at PODS pods, beside containerd 1.6 + runc.

PODS pods (20 by default), each running one busybox `sleep` container, in Cocoon's VMs and in
containerd's runc pods, on the same CNI conflist. Each figure is the wall time of one crictl call
(the same client for both runtimes, so its own start-up is in both), median over RUNS:
  - ListPodSandboxStats (`crictl statsp`) and ListContainerStats (`crictl stats`), which the kubelet's
    summary API and eviction manager call;
  - ListPodSandbox and ListContainers (`crictl pods`, `crictl ps`) as the control: calls that ask no guest;
  - Cocoon again with one pod's QEMU stopped (SIGSTOP): a frozen guest must not slow the node's calls.
containerd is skipped, with a message, where it cannot be installed or started.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

pods = int(sys.argv[1]) if len(sys.argv) > 1 else 20
runs = int(os.environ.get("COCOON_BENCH_RUNS", "9"))
bindir = os.environ["COCOON_BIN"]
guest = os.environ["COCOON_GUEST_DIR"]
images = os.environ["COCOON_TEST_IMAGES"]
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
crictl_bin = os.environ.get("CRICTL") or os.path.join(os.path.dirname(repo), "shared/tools/crictl")
root = tempfile.mkdtemp(prefix="cocoon-bench-stats-")
BRIDGE, SUBNET = "ccstats0", "10.215.0.0/22"
CGROUP = f"/cocoon-bench-{os.getpid()}"  # the pods' cgroups (cgroupfs form), removed at the end
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_peer
netdir = bench_peer.conflist(root, "cocoon-bench-stats", BRIDGE, SUBNET)
CALLS = [("ListPodSandboxStats", ["statsp", "-o", "json"]), ("ListContainerStats", ["stats", "-o", "json"]),
         ("ListPodSandbox", ["pods", "-q"]), ("ListContainers", ["ps", "-q"])]


def run(argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}...: {r.stderr.strip()}")
    return r.stdout.strip()


def start_pods(crictl, name, ids):
    """PODS pods with one sleeping container each; each pod's id goes into IDS as soon as it runs."""
    ctr = f"{root}/{name}-ctr.json"
    with open(ctr, "w") as f:
        json.dump({"metadata": {"name": "sleeper"}, "image": {"image": "cocoon.local/busybox:latest"},
                   "command": ["sleep", "100000"], "log_path": "sleeper.log"}, f)
    for i in range(pods):
        pod = f"{root}/{name}-pod{i}.json"
        os.makedirs(f"{root}/logs-{name}-{i}", exist_ok=True)
        with open(pod, "w") as f:
            # A pod cgroup as the kubelet gives one (containerd's pod stats need it; Cocoon's VM sits in it).
            json.dump({"metadata": {"name": f"stats{i}", "namespace": "bench", "uid": f"{name}-{i}"},
                       "log_directory": f"{root}/logs-{name}-{i}",
                       "linux": {"cgroup_parent": f"{CGROUP}/{name}-pod{i}"}}, f)
        pid = run(crictl + ["runp", pod])
        ids.append(pid)
        cid = run(crictl + ["create", pid, ctr, pod])
        run(crictl + ["start", cid])
        print(f"{name}: {i + 1}/{pods} pods", file=sys.stderr, flush=True)


def measure(crictl):
    out = {}
    for label, args in CALLS:
        times = []
        for _ in range(runs):
            t0 = time.monotonic()
            text = run(crictl + args)
            times.append((time.monotonic() - t0) * 1000)
            if label == "ListContainerStats":
                got = len(json.loads(text).get("stats", []))
                assert got == pods, f"{got} container stats for {pods} containers"
        out[label] = statistics.median(times)
    return out


def remove_pods(crictl, ids):
    for pid in ids:
        run(crictl + ["stopp", pid], check=False)
        run(crictl + ["rmp", pid], check=False)


procs = []
live = []  # (crictl argv, pod ids) not removed yet: pod VMs outlive their daemon by design
ours = frozen = theirs = None
why = ""
try:
    sock, daemon = bench_peer.start_cocoond(root, bindir, guest, netdir)
    procs.append(daemon)
    run([f"{bindir}/cocoonctl", "image", "import", "-r", f"unix://{sock}", f"{images}/busybox",
         "--name", "cocoon.local/busybox:latest"])
    cocoon = [crictl_bin, "--runtime-endpoint", f"unix://{sock}", "--image-endpoint", f"unix://{sock}", "-t", "120s"]
    ids = []
    live.append((cocoon, ids))
    start_pods(cocoon, "cocoon", ids)
    ours = measure(cocoon)
    # One pod's QEMU frozen: its guest answers nothing until SIGCONT.
    info = json.loads(run([f"{bindir}/cocoonctl", "inspectp", "-r", f"unix://{sock}", "-o", "json", ids[0]]))
    vm = info["info"]["info"]["vm"]
    qemu = int(vm["pid"])
    os.kill(qemu, 19)  # SIGSTOP
    try:
        time.sleep(1)
        frozen = measure(cocoon)
    finally:
        os.kill(qemu, 18)  # SIGCONT
    remove_pods(cocoon, ids)
    live.remove((cocoon, ids))

    peer_argv, peer, why = bench_peer.start(root, netdir, images)
    if peer:
        procs.append(peer)
    if peer_argv:
        try:
            cids = []
            live.append((peer_argv, cids))
            start_pods(peer_argv, "containerd", cids)
            theirs = measure(peer_argv)
        except (SystemExit, AssertionError) as e:
            why = f"containerd run failed: {e}"
finally:
    for crictl, pods_left in live:
        remove_pods(crictl, pods_left)
    bench_peer.stop_all(procs)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    # The pod cgroups the kubelet would remove: deepest first, in every hierarchy.
    subprocess.run(f"find /sys/fs/cgroup/ -depth -type d -path '*{CGROUP}*' -exec rmdir {{}} + 2>/dev/null",
                   shell=True)

print(f"\nnode-wide CRI calls at {pods} pods (one container each), ms per crictl call, medians of {runs}")
print("cocoon: pod VMs under TCG; 'frozen' = the same with one pod's QEMU under SIGSTOP")
print(f"{'':22} {'cocoon':>9} {'frozen':>9} {'containerd':>11} {'ratio':>7}")
for label, _ in CALLS:
    a, z = ours[label], frozen[label]
    b = theirs[label] if theirs else None
    ratio = f"{a / b:6.2f}x" if b else "     -"
    print(f"{label:22} {a:9.1f} {z:9.1f} {('%11.1f' % b) if b else '          -'} {ratio}")
if theirs is None:
    print(f"containerd: skipped ({why})")
