"""scripts/bench sandbox: RunPodSandbox and idle-pod memory against a bare QEMU boot of the same kernel.

The floor boots the same kernel with the same QEMU flags and a busybox initramfs whose init prints a
marker and powers off; Cocoon's figure is the wall time of `cocoonctl runp` (call to return, agent
ready), for each start mode: a cold boot, a clone of the handler's template (start = "template",
pool_size = 0), a VM taken from the warm pool (pool_size = 1, refilled between runs), and a cold boot
through libvirt (a q35 domain with SeaBIOS, against a bare q35 boot of the same kernel: the firmware and
PCI share of its time, the rest being libvirt's and cocoond's). Memory is PSS
from /proc/PID/smaps_rollup after the guest settles, for an idle pod VM of each mode (a lone clone maps
the whole template: its sharing shows in `scripts/bench density`) and for the bare guest held up
(cocoon.bare=hold). Medians over RUNS runs.
"""
import json, os, statistics, subprocess, sys, tempfile, time

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
guest = os.environ["COCOON_GUEST_DIR"]
bindir = os.environ["COCOON_BIN"]
QEMU = "/usr/bin/qemu-system-x86_64"
def host_tsc_khz():  # as cocoond's HostTSC: the guest must be told the host's real TSC rate
    for line in open("/proc/cpuinfo"):
        if line.startswith("cpu MHz"):
            khz = round(float(line.split(":")[1]) * 1000)
            return khz if 500_000 <= khz <= 10_000_000 else 2_000_000
    return 2_000_000


APPEND = f"console=ttyS0 quiet tsc_early_khz={host_tsc_khz()} tsc=reliable panic=-1 pci=off"
# What cocoond adds (GuestKernelArgs): the floor boots the same kernel with the same arguments; the
# bzImage without them is the floor as it was before (a second reference).
FAST = " cryptomgr.notests no_timer_check"
SETTLE = 3.0


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def bare_boot(hold, kernel="vmlinux", extra=FAST, machine="microvm,accel=tcg,rtc=on"):
    append = APPEND if machine.startswith("microvm") else APPEND.replace(" pci=off", "")
    argv = [QEMU, "-M", machine, "-cpu", "max,-erms,-fsrm", "-smp", "1", "-m", "256M", "-nodefaults",
            "-no-user-config", "-display", "none", "-no-reboot", "-kernel", f"{guest}/{kernel}",
            "-initrd", f"{guest}/bare.cpio", "-append", append + extra + (" cocoon.bare=hold" if hold else ""),
            "-serial", "stdio"]
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""
    while b"COCOON-BARE-READY" not in buf:
        chunk = p.stdout.read1(4096)
        if not chunk:
            raise SystemExit("bare boot ended without its marker")
        buf += chunk
    ready = time.monotonic() - t0
    pss = None
    if hold:
        time.sleep(SETTLE)
        pss = pss_kib(p.pid)
        p.kill()
    p.wait()
    return ready, pss


def ctl(*args):
    return subprocess.run([f"{bindir}/cocoonctl", args[0], "-r", f"unix://{sock}", *args[1:]], check=True, capture_output=True, text=True).stdout


root = tempfile.mkdtemp(prefix="cocoon-bench-")
os.chmod(root, 0o755)  # a libvirt VM's user passes through it to its run directory
sock = f"{root}/run/cocoon.sock"
with open(f"{root}/config.toml", "w") as f:
    f.write(f'state_root = "{root}/state"\nrun_dir = "{root}/run"\n[handlers.cocoon]\nbackend = "qemu"\n'
            f'kernel = "{guest}/vmlinux"\ninitrd = "{guest}/initrd.cpio"\nmemory_mib = 256\nvcpus = 1\naccel = "tcg"\n')
    for name, pool in (("tpl", 0), ("pool", 1)):
        f.write(f'[handlers.{name}]\nbackend = "qemu"\nkernel = "{guest}/vmlinux"\ninitrd = "{guest}/initrd.cpio"\n'
                f'memory_mib = 256\nvcpus = 1\naccel = "tcg"\nstart = "template"\npool_size = {pool}\n')
    f.write('[handlers.nat]\nbackend = "native"\n')  # no VM: the peer of containerd + runc
    f.write(f'[handlers.lv]\nbackend = "libvirt"\ntrusted_guests = true\nkernel = "{guest}/vmlinux"\ninitrd = "{guest}/initrd.cpio"\n'
            f'memory_mib = 256\nvcpus = 1\naccel = "tcg"\n')
daemon = subprocess.Popen([f"{bindir}/cocoond", "--config", f"{root}/config.toml", "--log-level", "warning"])
for _ in range(200):
    if os.path.exists(sock):
        break
    time.sleep(0.02)

def templates():
    listed = json.loads(ctl("info"))["info"]["templates"]
    return {t["handler"]: t for t in (json.loads(listed) if isinstance(listed, str) else listed)}


def wait_templates(pool_ready):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        t = templates()
        if t["tpl"]["ready"] and t["pool"]["ready"] and t["pool"]["pool_ready"] >= pool_ready:
            return t
        time.sleep(0.1)
    raise SystemExit(f"templates not ready: {templates()}")


MODES = (("cold", "cocoon"), ("template", "tpl"), ("pool", "pool"), ("libvirt", "lv"), ("native", "nat"))
VM_MODES = [m for m, _ in MODES if m != "native"]
STARTS = {"libvirt": "cold", "native": "cold"}  # how each mode's pod must have started (its own name otherwise)
floor, old_floor, q35_floor, bare_pss, stoprm_s = [], [], [], [], []
run_s = {m: [] for m, _ in MODES}
inside = {m: [] for m, _ in MODES}
pod_pss = {m: [] for m, _ in MODES}
steps = {}
try:
    built = wait_templates(1)
    for i in range(runs):
        floor.append(bare_boot(hold=False)[0])
        old_floor.append(bare_boot(hold=False, kernel="vmlinuz", extra="")[0])
        q35_floor.append(bare_boot(hold=False, machine="q35,accel=tcg")[0])
        for mode, handler in MODES:
            if mode == "pool":
                wait_templates(1)
                time.sleep(1.0)  # the refilled VM settles, as a pool VM waiting for a pod would have
            pod = f"{root}/pod{i}{mode}.json"
            with open(pod, "w") as f:
                json.dump({"metadata": {"name": f"bench{i}{mode}", "namespace": "bench", "uid": f"u{i}{mode}"}}, f)
            t0 = time.monotonic()
            pid_ = ctl("runp", "--runtime", handler, pod).strip()
            run_s[mode].append(time.monotonic() - t0)
            info = json.loads(ctl("inspectp", pid_))["info"]["info"]["vm"]
            if info.get("start") != STARTS.get(mode, mode):
                raise SystemExit(f"{mode} run started as {info.get('start')}: {info.get('cold_reason')}")
            inside[mode].append(info["boot_ms"] / 1000)
            for step, ms in (info.get("start_steps_ms") or {}).items():
                steps.setdefault(mode, {}).setdefault(step, []).append(ms)
            time.sleep(SETTLE)
            pod_pss[mode].append(pss_kib(info["pid"]))
            t0 = time.monotonic()
            ctl("stopp", pid_)
            ctl("rmp", pid_)
            stoprm_s.append(time.monotonic() - t0)
        bare_pss.append(bare_boot(hold=True)[1])
    # The peer: containerd + runc's RunPodSandbox (a pause container in a netns), same CNI network.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_peer
    crictl, peer, peer_why = bench_peer.start(root, "/etc/cni/net.d")
    peer_s = []
    if crictl:
        for i in range(runs):
            spec = f"{root}/peer{i}.json"
            with open(spec, "w") as f:
                json.dump({"metadata": {"name": f"peer{i}", "namespace": "bench", "uid": f"p{i}"}, "linux": {}}, f)
            t0 = time.monotonic()
            r = subprocess.run(crictl + ["runp", spec], capture_output=True, text=True)
            if r.returncode != 0:
                peer_why = f"crictl runp: {r.stderr.strip()[-200:]}"
                break
            peer_s.append(time.monotonic() - t0)
            subprocess.run(crictl + ["stopp", r.stdout.strip()], capture_output=True)
            subprocess.run(crictl + ["rmp", r.stdout.strip()], capture_output=True)
    if peer:
        peer.terminate()
        peer.wait()
finally:
    daemon.terminate()
    daemon.wait()
    subprocess.run(["rm", "-rf", root])

med = statistics.median
f_floor = med(floor)
print(f"\nscripts/bench sandbox: {runs} runs, medians (TCG, 1 vCPU, 256 MiB, kernel {os.path.basename(guest)}/vmlinux)")
print(f"{'bare QEMU boot to init marker (the floor)':48} {f_floor:9.3f}s   vmlinux through PVH,{FAST}")
print(f"{'  the floor before: bzImage, without those':48} {med(old_floor):9.3f}s   ({f_floor / med(old_floor):.2f}x of it)")
print(f"templates: built in {built['tpl']['build_ms'] / 1000:.2f}s, {built['tpl']['ram_data_mib']} MiB of RAM data")
print(f"{'figure':48} {'cocoon':>10} {'reference':>10} {'ratio':>7}")
for mode in VM_MODES:
    r, d = med(run_s[mode]), med(inside[mode])
    print(f"{'RunPodSandbox ' + mode + ' (cocoonctl runp)':48} {r:9.3f}s {f_floor:9.2f}s {r / f_floor:6.2f}x   (reference: bare QEMU boot to init marker)")
    print(f"{'  of which inside cocoond (call to ready)':48} {d:9.3f}s {f_floor:9.2f}s {d / f_floor:6.2f}x")
    if mode == "libvirt":
        q = med(q35_floor)
        print(f"{'  vs a bare q35 boot (SeaBIOS, PCI) of the kernel':48} {r:9.3f}s {q:9.2f}s {r / q:6.2f}x   (q35 + firmware alone: {q - f_floor:+.2f}s over the floor)")
        print(f"{'  vs cocoon cold (qemu backend, microvm)':48} {r:9.3f}s {med(run_s['cold']):9.2f}s {r / med(run_s['cold']):6.2f}x   (target <= 2x)")
    parts = ", ".join(f"{k} {med(v):.0f} ms" for k, v in sorted(steps.get(mode, {}).items()))
    print(f"{'    steps (medians; vm and network overlap for a clone)':48} {parts}")
print(f"{'RunPodSandbox native (cocoonctl runp, no VM)':48} {med(run_s['native']):9.3f}s   (its agent ready in {med(inside['native']):.3f}s)")
if peer_s:
    p = med(peer_s)
    print(f"{'containerd + runc RunPodSandbox (crictl runp)':48} {p:9.3f}s   the peer, same machine and CNI network")
    for mode, _ in MODES:
        print(f"{'  cocoon ' + mode + ' vs containerd':48} {med(run_s[mode]) / p:8.2f}x")
else:
    print(f"containerd + runc: skipped ({peer_why})")
print(f"{'StopPodSandbox + RemovePodSandbox':48} {med(stoprm_s):9.2f}s {'-':>10} {'':>7}")
bp = med(bare_pss) / 1024
for mode in VM_MODES:
    pp = med(pod_pss[mode]) / 1024
    print(f"{'idle pod VM PSS, ' + mode:48} {pp:8.1f}Mi {bp:8.1f}Mi {pp / bp:6.2f}x   ({pp - bp:+.1f} MiB vs the bare guest)")
print(f"{'idle native pod agent PSS':48} {med(pod_pss['native']) / 1024:8.1f}Mi   (no VM: the pod's agent is its only process)")
print("targets: cold RunPodSandbox <= 1.25x floor; from template <= 0.3 s; from pool <= 0.1 s (call to ready)")
print("raw:", json.dumps({"floor_s": floor, "old_floor_s": old_floor, "q35_floor_s": q35_floor, "containerd_runp_s": peer_s, "runp_s": run_s, "inside_s": inside, "stop_rm_s": stoprm_s,
                          "bare_pss_kib": bare_pss, "pod_pss_kib": pod_pss}))
