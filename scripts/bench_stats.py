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


def start_pods(crictl, name):
    """PODS pods with one sleeping container each; returns the pod ids."""
    ids = []
    ctr = f"{root}/{name}-ctr.json"
    with open(ctr, "w") as f:
        json.dump({"metadata": {"name": "sleeper"}, "image": {"image": "cocoon.local/busybox:latest"},
                   "command": ["sleep", "100000"], "log_path": "sleeper.log"}, f)
    for i in range(pods):
        pod = f"{root}/{name}-pod{i}.json"
        os.makedirs(f"{root}/logs-{name}-{i}", exist_ok=True)
        with open(pod, "w") as f:
            json.dump({"metadata": {"name": f"stats{i}", "namespace": "bench", "uid": f"{name}-{i}"},
                       "log_directory": f"{root}/logs-{name}-{i}", "linux": {}}, f)
        pid = run(crictl + ["runp", pod])
        cid = run(crictl + ["create", pid, ctr, pod])
        run(crictl + ["start", cid])
        ids.append(pid)
        print(f"{name}: {i + 1}/{pods} pods", file=sys.stderr, flush=True)
    return ids


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
ours = frozen = theirs = None
why = ""
try:
    sock, daemon = bench_peer.start_cocoond(root, bindir, guest, netdir)
    procs.append(daemon)
    run([f"{bindir}/cocoonctl", "image", "import", "-r", f"unix://{sock}", f"{images}/busybox",
         "--name", "cocoon.local/busybox:latest"])
    cocoon = [crictl_bin, "--runtime-endpoint", f"unix://{sock}", "--image-endpoint", f"unix://{sock}", "-t", "120s"]
    ids = start_pods(cocoon, "cocoon")
    ours = measure(cocoon)
    # One pod's QEMU frozen: its guest answers nothing until SIGCONT.
    info = json.loads(run(cocoon + ["inspectp", "-o", "json", ids[0]]))["info"]["info"]
    vm = (json.loads(info) if isinstance(info, str) else info)["vm"]  # crictl decodes it, or not
    qemu = int(vm["pid"])
    os.kill(qemu, 19)  # SIGSTOP
    try:
        time.sleep(1)
        frozen = measure(cocoon)
    finally:
        os.kill(qemu, 18)  # SIGCONT
    remove_pods(cocoon, ids)

    peer_argv, peer, why = bench_peer.start(root, netdir, images)
    if peer:
        procs.append(peer)
    if peer_argv:
        try:
            cids = start_pods(peer_argv, "containerd")
            theirs = measure(peer_argv)
            remove_pods(peer_argv, cids)
        except (SystemExit, AssertionError) as e:
            why = f"containerd run failed: {e}"
finally:
    bench_peer.stop_all(procs)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)

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
