"""scripts/bench network: pod networking through CNI, beside containerd 1.6 + runc on the same bridge.

One conflist (bridge + host-local + portmap + loopback) in a directory of its own serves both runtimes,
so Cocoon's pod VMs and containerd's runc pods sit on the same bridge. Figures, medians over RUNS:
  - RunPodSandbox, and inside it what the network cost: the CNI plugins' ADD, and Cocoon's own part
    (namespace + tap + tc wiring) — target: wiring <= 20 ms beyond the plugins;
  - TCP throughput of 100 MiB host -> pod (nc), pod -> host (httpd) and pod -> pod (wget), each beside
    containerd's pods and beside Cocoon's agent channel (a streaming exec of the same 100 MiB);
  - HTTP request latency host -> pod (a small GET on a new connection), p50 and p99.
containerd is skipped, with a message, where it cannot be installed or started.
"""
import http.client, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
bindir = os.environ["COCOON_BIN"]
guest = os.environ["COCOON_GUEST_DIR"]
images = os.environ["COCOON_TEST_IMAGES"]
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
crictl_bin = os.environ.get("CRICTL") or os.path.join(os.path.dirname(repo), "shared/tools/crictl")
MIB = 100
root = tempfile.mkdtemp(prefix="cocoon-bench-net-")
BRIDGE, SUBNET = "ccbench0", "10.214.0.0/24"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_peer
netdir = bench_peer.conflist(root, "cocoon-bench", BRIDGE, SUBNET, portmap=True)

SERVER = ("mkdir -p /www && echo ok > /www/index.html && dd if=/dev/zero of=/www/big bs=1M count=%d 2>/dev/null; "
          "(while true; do nc -l -p 5001 > /dev/null; done) & exec httpd -f -p 80 -h /www" % MIB)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def get_mibs(ip):
    """pod -> host: download /big from the pod's httpd."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection(ip, 80, timeout=120)
    c.request("GET", "/big")
    r = c.getresponse()
    n = 0
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        n += len(b)
    c.close()
    assert n == MIB << 20, n
    return MIB / (time.monotonic() - t0)


def put_mibs(ip):
    """host -> pod: 100 MiB into the pod's `nc -l`, timed until it has read everything and closed."""
    for _ in range(50):
        try:
            s = socket.create_connection((ip, 5001), timeout=120)
            break
        except OSError:
            time.sleep(0.1)
    chunk = b"\0" * (1 << 20)
    t0 = time.monotonic()
    for _ in range(MIB):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()
    return MIB / (time.monotonic() - t0)


def latencies(ip, n=200):
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        c = http.client.HTTPConnection(ip, 80, timeout=30)
        c.request("GET", "/index.html")
        c.getresponse().read()
        c.close()
        out.append((time.monotonic() - t0) * 1000)
    return out


def wait_http(ip):
    for _ in range(300):
        try:
            c = http.client.HTTPConnection(ip, 80, timeout=2)
            c.request("GET", "/index.html")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"no HTTP answer from {ip}")


class Runtime:
    """A CRI runtime driven through a CLI (cocoonctl or crictl) with pod/container JSON files."""

    def __init__(self, name, argv, image, after=()):
        """argv: the tool and its global options; after: options that follow the subcommand."""
        self.name, self.argv, self.after, self.image, self.n = name, argv, list(after), image, 0

    def cmd(self, sub, *args):
        return self.argv + [sub] + self.after + list(args)

    def call(self, *args, check=True):
        r = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=600)
        if check and r.returncode != 0:
            raise SystemExit(f"{self.name} {args[0]}: {r.stderr.strip()}")
        return r.stdout.strip()

    def pod_file(self):
        self.n += 1
        path = f"{root}/{self.name}-pod{self.n}.json"
        with open(path, "w") as f:
            json.dump({"metadata": {"name": f"bench{self.n}", "namespace": "bench", "uid": f"{self.name}-{self.n}"},
                       "log_directory": f"{root}/logs-{self.name}-{self.n}", "linux": {}}, f)
        os.makedirs(f"{root}/logs-{self.name}-{self.n}", exist_ok=True)
        return path

    def runp(self):
        pod = self.pod_file()
        t0 = time.monotonic()
        pid = self.call("runp", pod)
        return pid, (time.monotonic() - t0) * 1000, pod

    def ip(self, pid):
        return json.loads(self.call("inspectp", "-o", "json", pid))["status"]["network"]["ip"]

    def container(self, pid, pod, script):
        path = f"{root}/{self.name}-ctr{self.n}.json"
        with open(path, "w") as f:
            json.dump({"metadata": {"name": "srv"}, "image": {"image": self.image},
                       "command": ["sh", "-c", script], "log_path": "srv.log"}, f)
        cid = self.call("create", pid, path, pod)
        self.call("start", cid)
        return cid

    def rm(self, pid):
        self.call("stopp", pid)
        self.call("rmp", pid)

    def pod_to_pod(self, cid, ip):
        # Five downloads in a row: /proc/uptime ticks in 10 ms, a fast pair moves 100 MiB in less.
        out = self.call("exec", cid, "sh", "-c",
                        f"a=$(cut -d' ' -f1 /proc/uptime); for i in 1 2 3 4 5; do wget -q -O /dev/null http://{ip}/big; "
                        "done; b=$(cut -d' ' -f1 /proc/uptime); echo $a $b")
        a, b = map(float, out.split())
        return 5 * MIB / max(b - a, 0.01)


def measure(rt, cocoon):
    print(f"== {rt.name}", flush=True)
    res = {"runp": [], "plugins": [], "wiring": []}
    for _ in range(runs):
        pid, ms, _ = rt.runp()
        res["runp"].append(ms)
        if cocoon:
            info = json.loads(rt.call("inspectp", "-o", "json", pid))["info"]["info"]
            t = (info.get("network") or {}).get("timing") or {}
            res["plugins"].append(t.get("pluginsMs", float("nan")))
            res["wiring"].append(t.get("namespaceMs", 0) + t.get("wiringMs", 0))
        rt.rm(pid)
    spid, _, spod = rt.runp()
    cpid, _, cpod = rt.runp()
    server = rt.container(spid, spod, SERVER)
    client = rt.container(cpid, cpod, "exec sleep 100000")
    sip = rt.ip(spid)
    wait_http(sip)
    res["pod_to_host"] = [get_mibs(sip) for _ in range(3)]
    res["host_to_pod"] = [put_mibs(sip) for _ in range(3)]
    res["pod_to_pod"] = [rt.pod_to_pod(client, sip) for _ in range(3)]
    lat = latencies(sip)
    res["lat_p50"], res["lat_p99"] = pct(lat, 50), pct(lat, 99)
    if cocoon:
        # The agent channel: the same 100 MiB out of the pod through a streaming exec.
        ch = []
        for _ in range(3):
            t0 = time.monotonic()
            r = subprocess.run(rt.cmd("exec", server, "cat", "/www/big"), stdout=subprocess.PIPE, timeout=600)
            assert len(r.stdout) == MIB << 20, len(r.stdout)
            ch.append(MIB / (time.monotonic() - t0))
        res["channel"] = ch
    rt.rm(spid)
    rt.rm(cpid)
    return res


procs = []
try:
    # Cocoon (release build) on the bench conflist.
    sock, daemon = bench_peer.start_cocoond(root, bindir, guest, netdir)
    procs.append(daemon)
    cocoon = Runtime("cocoon", [f"{bindir}/cocoonctl"], "cocoon.local/busybox:latest", ["-r", f"unix://{sock}"])
    subprocess.run([f"{bindir}/cocoonctl", "image", "import", "-r", f"unix://{sock}", f"{images}/busybox",
                    "--name", "cocoon.local/busybox:latest"], check=True, capture_output=True)
    ours = measure(cocoon, True)

    theirs = None
    why = ""
    peer_argv, peer, why = bench_peer.start(root, netdir, images)
    if peer:
        procs.append(peer)
    if peer_argv:
        crictl = Runtime("containerd", peer_argv, "cocoon.local/busybox:latest")
        try:
            theirs = measure(crictl, False)
        except SystemExit as e:
            why = f"containerd run failed: {e}"
    print()
    print(f"medians over {runs} RunPodSandbox and 3 transfers of {MIB} MiB; cocoon under TCG (no vhost-net)")
    print(f"{'':34} {'cocoon':>10} {'containerd':>11} {'ratio':>7}")

    def row(label, key, unit, better_low=True):
        a = median(ours[key]) if isinstance(ours[key], list) else ours[key]
        b = (median(theirs[key]) if isinstance(theirs[key], list) else theirs[key]) if theirs else None
        ratio = f"{a / b:6.2f}x" if b else "     -"
        print(f"{label:34} {a:9.1f}{unit} {('%10.1f' % b) + unit if b else '          -'} {ratio}")

    row("RunPodSandbox (ms)", "runp", "")
    print(f"{'  CNI plugins ADD (ms)':34} {median(ours['plugins']):9.1f}")
    print(f"{'  netns + tap + tc wiring (ms)':34} {median(ours['wiring']):9.1f}   target <= 20 beyond the plugins")
    row("host -> pod (MiB/s)", "host_to_pod", "")
    row("pod -> host (MiB/s)", "pod_to_host", "")
    row("pod -> pod (MiB/s)", "pod_to_pod", "")
    print(f"{'agent channel, exec out (MiB/s)':34} {median(ours['channel']):9.1f}")
    row("GET latency p50 (ms)", "lat_p50", "")
    row("GET latency p99 (ms)", "lat_p99", "")
    if theirs is None:
        print(f"containerd: skipped ({why})")
finally:
    bench_peer.stop_all(procs)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
