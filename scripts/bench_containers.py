"""scripts/bench containers: container calls in a running pod VM, beside containerd 1.6 + runc.

Cocoon's figures are wall times of `cocoonctl` calls against a release cocoond (a busybox image
imported, one pod VM running): Create+Start, ExecSync `true`, Stop (grace 0) + Remove. A CLI process
costs something by itself, so the round trip of `cocoonctl version` is measured in the same run and
shown, and each figure is also given without it. The references are containerd 1.6.20 + runc on
these machines (../shared/DESIGN.md: per CRI call, ExecSync through a CLI process). Medians.
"""
import os, statistics, subprocess, sys, tempfile, time

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
guest = os.environ["COCOON_GUEST_DIR"]
bindir = os.environ["COCOON_BIN"]
images = os.environ["COCOON_TEST_IMAGES"]
# containerd 1.6.20 + runc, DESIGN.md (ms): CreateContainer 12 + StartContainer 91; ExecSync ~80
# through a CLI process; StopContainer 93 + RemoveContainer 5.
REF = {"create+start": 0.103, "execsync": 0.080, "stop+remove": 0.098}
TARGET = {"create+start": 0.5, "execsync": 0.080, "stop+remove": 0.5}

root = tempfile.mkdtemp(prefix="cocoon-bench-")
sock = f"{root}/run/cocoon.sock"


def ctl(*args):
    n = 2 if args[0] == "image" else 1  # the endpoint option goes right after the (sub)command
    p = subprocess.run([f"{bindir}/cocoonctl", *args[:n], "-r", f"unix://{sock}", *args[n:]], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"cocoonctl {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout.strip()


def timed(*args):
    t0 = time.monotonic()
    out = ctl(*args)
    return time.monotonic() - t0, out


with open(f"{root}/config.toml", "w") as f:
    f.write(f'state_root = "{root}/state"\nrun_dir = "{root}/run"\n[handlers.cocoon]\nbackend = "qemu"\n'
            f'kernel = "{guest}/vmlinux"\ninitrd = "{guest}/initrd.cpio"\nmemory_mib = 256\nvcpus = 1\naccel = "tcg"\n')
with open(f"{root}/pod.yaml", "w") as f:
    f.write(f"metadata: {{name: bench, namespace: default, uid: bench-1}}\nlog_directory: {root}/logs\n")
with open(f"{root}/ctr.yaml", "w") as f:
    f.write("metadata: {name: sleeper}\nimage: {image: cocoon.local/busybox:latest}\ncommand: [sleep, '100000']\n")
daemon = subprocess.Popen([f"{bindir}/cocoond", "--config", f"{root}/config.toml", "--log-level", "warning"])
for _ in range(200):
    if os.path.exists(sock):
        break
    time.sleep(0.02)

cli, create_start, execsync, stop_remove = [], [], [], []
pod = None
try:
    ctl("image", "import", f"{images}/busybox", "--name", "cocoon.local/busybox:latest")
    pod = ctl("runp", f"{root}/pod.yaml")
    for i in range(runs):
        cli.append(timed("version")[0])
        t_create, cid = timed("create", pod, f"{root}/ctr.yaml", f"{root}/pod.yaml")
        t_start, _ = timed("start", cid)
        create_start.append(t_create + t_start)
        for _ in range(3):
            execsync.append(timed("exec", "--sync", cid, "true")[0])
        t_stop, _ = timed("stop", "--grace", "0", cid)
        t_rm, _ = timed("rm", cid)
        stop_remove.append(t_stop + t_rm)
        print(f"run {i + 1}/{runs}: create+start {create_start[-1]:.3f}s  exec {execsync[-1]:.3f}s  stop+rm {stop_remove[-1]:.3f}s", file=sys.stderr)
finally:
    if pod:  # pod VMs outlive the daemon by design: remove this one explicitly
        ctl("rmp", pod)
    daemon.terminate()
    daemon.wait()

med = statistics.median
overhead = med(cli)
print(f"\ncontainer calls in a running pod VM (TCG, 1 vCPU), medians of {runs} runs ({len(execsync)} execs)")
print(f"one cocoonctl round trip (version): {overhead * 1000:.0f} ms, included below; 'net' subtracts it per call")
print(f"{'':26} {'cocoon':>9} {'net':>9} {'containerd':>11} {'ratio':>7} {'target':>8}")
for name, values, calls in [("create+start", create_start, 2), ("execsync", execsync, 1), ("stop+remove", stop_remove, 2)]:
    m = med(values)
    net = m - calls * overhead
    print(f"{name:26} {m * 1000:7.0f}ms {net * 1000:7.0f}ms {REF[name] * 1000:9.0f}ms {m / REF[name]:6.2f}x {TARGET[name] * 1000:6.0f}ms")
