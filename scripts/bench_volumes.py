"""scripts/bench volumes: a volume shared with a pod VM (virtio-fs, one virtiofsd per pod) beside the
container's own root filesystem (EROFS image + tmpfs upper, in the guest) and the host directly.

One release cocoond with three handlers, one per virtio-fs cache mode (auto: Cocoon's default,
always, none), one pod each (1 vCPU, 1536 MiB so 1 GiB fits on the guest's tmpfs upper, TCG), one
privileged busybox container each with a host directory mounted at /vol. In each run:
  - write 1 GiB sequentially (dd bs=1M, conv=fsync) and read it back (dd bs=1M) with the guest's
    page cache dropped first (the host's stays warm: virtiofsd serves from it, and the host
    reference reads from it too);
  - create 10 000 empty files (xargs touch), stat them all (ls -l, guest caches dropped first),
    delete them (rm -rf).
Each is timed inside its own system by /proc/uptime (10 ms resolution). Then, per cache mode, how
long a host change takes to show in the guest: an append to a file, and a ConfigMap-style `..data`
symlink swap, each seen by a guest loop; measured from the host's write to the ExecSync's return
(so it includes the reply, shown beside as the `true` ExecSync round trip). And how long a line
one container appends to the shared volume takes to show in a second container of the same pod
(by the guest's clock: the writer's after its append, the reader's when its 5 ms poll sees it),
beside the same two processes on one file of the guest's own tmpfs. Medians.
"""
import os, shutil, statistics, subprocess, sys, tempfile, threading, time

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
guest = os.environ["COCOON_GUEST_DIR"]
bindir = os.environ["COCOON_BIN"]
images = os.environ["COCOON_TEST_IMAGES"]
MODES = ["auto", "always", "none"]
root = tempfile.mkdtemp(prefix="cocoon-bench-vol-")
sock = f"{root}/run/cocoon.sock"


def ctl(*args, check=True):
    n = 2 if args[0] == "image" else 1  # the endpoint option goes right after the (sub)command
    p = subprocess.run([f"{bindir}/cocoonctl", *args[:n], "-r", f"unix://{sock}", *args[n:]], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"cocoonctl {' '.join(args)}: {p.stderr.strip()}")
    return p


def guest_sh(cid, script, timeout=600):
    return ctl("exec", "--sync", "--sync-timeout", str(timeout), cid, "sh", "-c", script, check=False)


def timed_script(body):
    """A shell script printing the seconds `body` took, by /proc/uptime."""
    return f"read a _ </proc/uptime; {body}; read b _ </proc/uptime; echo $a $b"


def elapsed(output):
    a, b = output.split()[-2:]
    return float(b) - float(a)


DROP = "sync; echo 3 > /proc/sys/vm/drop_caches"
OPS = {
    "write 1 GiB": lambda d: (f"rm -f {d}/big", timed_script(f"dd if=/dev/zero of={d}/big bs=1M count=1024 conv=fsync 2>/dev/null")),
    "read 1 GiB": lambda d: (None, timed_script(f"dd if={d}/big of=/dev/null bs=1M 2>/dev/null")),
    "create 10k": lambda d: (f"rm -rf {d}/m; rm -f {d}/big; mkdir {d}/m", timed_script(f"cd {d}/m && seq 1 10000 | sed s/^/f/ | xargs touch")),
    "stat 10k": lambda d: (None, timed_script(f"ls -l {d}/m > /dev/null")),
    "delete 10k": lambda d: (None, timed_script(f"rm -rf {d}/m")),
}


def run_in_guest(cid, d, op, drop):
    prep, script = OPS[op](d)
    pre = "; ".join(x for x in [prep, DROP if drop else None] if x)
    if pre:
        guest_sh(cid, pre)
    p = guest_sh(cid, script)
    if p.returncode != 0:
        raise SystemExit(f"{op} in {d}: {p.stdout} {p.stderr}")
    return elapsed(p.stdout)


def run_on_host(d, op):
    prep, script = OPS[op](d)
    if prep:
        subprocess.run(["busybox", "sh", "-c", prep], check=True)
    p = subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True, check=True)
    return elapsed(p.stdout)


def visibility(cid, hostdir, kind):
    """Seconds from a host change to a guest loop's ExecSync return, or None when not seen in 10 s."""
    token = f"T{time.monotonic_ns()}"
    if kind == "append":
        path, guest_path = f"{hostdir}/lat", "/vol/lat"
        with open(path, "w") as f:
            f.write("start\n")
    else:
        cm = f"{hostdir}/cm"
        shutil.rmtree(cm, ignore_errors=True)
        os.makedirs(f"{cm}/..v0")
        with open(f"{cm}/..v0/key", "w") as f:
            f.write("start\n")
        os.symlink("..v0", f"{cm}/..data")
        os.symlink("..data/key", f"{cm}/key")
        guest_path = "/vol/cm/key"
    guest_sh(cid, f"cat {guest_path} > /dev/null")  # the guest has it cached, as a running app would
    result = {}

    def wait():
        p = guest_sh(cid, f"while ! grep -q {token} {guest_path} 2>/dev/null; do :; done; echo seen", timeout=10)
        result["t"] = time.monotonic()
        result["seen"] = "seen" in p.stdout

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(1.5)  # the loop runs, the guest's caches are as an app leaves them
    t0 = time.monotonic()
    if kind == "append":
        with open(f"{hostdir}/lat", "a") as f:
            f.write(token + "\n")
    else:
        os.makedirs(f"{cm}/..v1")
        with open(f"{cm}/..v1/key", "w") as f:
            f.write(token + "\n")
        os.symlink("..v1", f"{cm}/..data_tmp")
        os.rename(f"{cm}/..data_tmp", f"{cm}/..data")
    t.join()
    return result["t"] - t0 if result.get("seen") else None


def peer_latency(writer, reader, writer_path, reader_path):
    """Guest seconds from one container's append to another's poll seeing it, or None (10 s)."""
    token = f"P{time.monotonic_ns()}"
    guest_sh(writer, f"echo start >> {writer_path}")
    result = {}

    def wait():
        result["p"] = guest_sh(
            reader, f"until grep -q {token} {reader_path} 2>/dev/null; do usleep 5000; done; "
            "read t _ </proc/uptime; echo $t", timeout=10)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(1.5)  # the reader's loop runs
    w = guest_sh(writer, f"echo {token} >> {writer_path}; read t _ </proc/uptime; echo $t")
    t.join()
    try:
        return float(result["p"].stdout.split()[-1]) - float(w.stdout.split()[-1])
    except (ValueError, IndexError):
        return None


handlers = "".join(
    f'[handlers.{"cocoon" if m == "auto" else "vfs-" + m}]\nbackend = "qemu"\nkernel = "{guest}/vmlinux"\n'
    f'initrd = "{guest}/initrd.cpio"\nmemory_mib = 1536\nvcpus = 1\naccel = "tcg"\nshared_fs_cache = "{m}"\n'
    for m in MODES)
with open(f"{root}/config.toml", "w") as f:
    f.write(f'state_root = "{root}/state"\nrun_dir = "{root}/run"\n{handlers}')
daemon = subprocess.Popen([f"{bindir}/cocoond", "--config", f"{root}/config.toml", "--log-level", "warning"])
for _ in range(200):
    if os.path.exists(sock):
        break
    time.sleep(0.02)

pods, ctrs, hostdirs = {}, {}, {}
results = {}  # (target, op) -> [seconds]
latency = {}  # (mode, kind) -> [seconds or None]
exec_rt = []
try:
    ctl("image", "import", f"{images}/busybox", "--name", "cocoon.local/busybox:latest")
    for m in MODES:
        hostdirs[m] = f"{root}/vol-{m}"
        os.makedirs(hostdirs[m])
        with open(f"{root}/pod-{m}.yaml", "w") as f:
            f.write(f"metadata: {{name: vol-{m}, namespace: default, uid: vol-{m}}}\nlog_directory: {root}/logs\n")
        with open(f"{root}/ctr-{m}.yaml", "w") as f:
            f.write("metadata: {name: bench}\nimage: {image: cocoon.local/busybox:latest}\ncommand: [sleep, '100000']\n"
                    f"mounts: [{{host_path: {hostdirs[m]}, container_path: /vol}}]\n"
                    "linux: {security_context: {privileged: true}}\n")
        runtime = "cocoon" if m == "auto" else "vfs-" + m
        pods[m] = ctl("runp", "--runtime", runtime, f"{root}/pod-{m}.yaml").stdout.strip()
        ctrs[m] = ctl("create", pods[m], f"{root}/ctr-{m}.yaml", f"{root}/pod-{m}.yaml").stdout.strip()
        ctl("start", ctrs[m])
    with open(f"{root}/ctr-auto.yaml") as f, open(f"{root}/ctr-peer.yaml", "w") as g:
        g.write(f.read().replace("name: bench", "name: peer"))
    peer = ctl("create", pods["auto"], f"{root}/ctr-peer.yaml", f"{root}/pod-auto.yaml").stdout.strip()
    ctl("start", peer)
    guest_sh(ctrs["auto"], "mkdir -p /bench")
    hostref = f"{root}/host"
    os.makedirs(hostref)
    for i in range(runs):
        for op in OPS:
            for m in MODES:
                results.setdefault((f"virtio-fs cache={m}", op), []).append(
                    run_in_guest(ctrs[m], "/vol", op, drop=op in ("read 1 GiB", "stat 10k")))
            results.setdefault(("container rootfs (guest)", op), []).append(
                run_in_guest(ctrs["auto"], "/bench", op, drop=op in ("read 1 GiB", "stat 10k")))
            results.setdefault(("host directly", op), []).append(run_on_host(hostref, op))
        for m in MODES:
            for kind in ["append", "..data swap"]:
                latency.setdefault((m, kind), []).append(visibility(ctrs[m], hostdirs[m], kind))
        latency.setdefault(("peer", "virtio-fs"), []).append(peer_latency(ctrs["auto"], peer, "/vol/peer", "/vol/peer"))
        latency.setdefault(("peer", "tmpfs"), []).append(peer_latency(ctrs["auto"], ctrs["auto"], "/tmp/peer", "/tmp/peer"))
        for _ in range(3):
            t0 = time.monotonic()
            ctl("exec", "--sync", ctrs["auto"], "true")
            exec_rt.append(time.monotonic() - t0)
        print(f"run {i + 1}/{runs} done", file=sys.stderr)
finally:
    for pod in pods.values():  # pod VMs outlive the daemon by design: remove them explicitly
        ctl("rmp", pod, check=False)
    daemon.terminate()
    daemon.wait()
    shutil.rmtree(root, ignore_errors=True)

med = statistics.median
print(f"\nvolumes in a pod VM (TCG, 1 vCPU), medians of {runs} runs; seconds (ratio to the host)")
targets = [f"virtio-fs cache={m}" for m in MODES] + ["container rootfs (guest)", "host directly"]
print(f"{'':26}" + "".join(f"{op:>18}" for op in OPS))
for target in targets:
    cells = []
    for op in OPS:
        v, h = med(results[(target, op)]), med(results[("host directly", op)])
        cells.append(f"{v:7.2f}s ({v / h:5.1f}x)" if h > 0 else f"{v:7.2f}s")
    print(f"{target:26}" + "".join(f"{c:>18}" for c in cells))
print(f"\nhost change -> seen in the guest (includes the ExecSync reply; `true` ExecSync: {med(exec_rt) * 1000:.0f} ms)")
for m in MODES:
    cells = []
    for kind in ["append", "..data swap"]:
        seen = [x for x in latency[(m, kind)] if x is not None]
        missed = len(latency[(m, kind)]) - len(seen)
        text = f"{med(seen) * 1000:6.0f} ms" if seen else "   never"
        cells.append(f"{kind}: {text}" + (f" ({missed} of {len(latency[(m, kind)])} not seen in 10 s)" if missed else ""))
    print(f"  cache={m:7} " + "   ".join(cells))
peer = [x for x in latency[("peer", "virtio-fs")] if x is not None]
local = [x for x in latency[("peer", "tmpfs")] if x is not None]
if peer and local:
    print(f"\ncontainer -> container append seen (guest clock, 5 ms poll): shared volume {med(peer) * 1000:.0f} ms "
          f"(max {max(peer) * 1000:.0f}) vs one file on the guest's tmpfs {med(local) * 1000:.0f} ms; "
          f"{len(latency[('peer', 'virtio-fs')]) - len(peer)} not seen in 10 s")
