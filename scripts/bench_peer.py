"""containerd 1.6 + runc as the peer runtime a benchmark measures beside Cocoon, in the same run.

`start(root, cni_conf_dir, images)` starts containerd with its CRI plugin on a socket under ROOT (pause
image: busybox sleeping for ever, imported without a registry; with IMAGES, the test busybox too as
cocoon.local/busybox:latest) and returns (crictl argv, process, why): argv is None, with why, where
containerd, runc or crictl is missing or does not start.
"""
import json, os, shutil, subprocess, sys, time

repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
crictl_bin = os.environ.get("CRICTL") or os.path.join(os.path.dirname(repo), "shared/tools/crictl")


def start(root, cni_conf_dir, images=None):
    if not (shutil.which("containerd") and shutil.which("runc") and os.access(crictl_bin, os.X_OK)):
        return None, None, "containerd, runc or crictl not found"
    os.makedirs(f"{root}/containerd", exist_ok=True)
    csock = f"{root}/containerd/containerd.sock"
    with open(f"{root}/containerd/config.toml", "w") as f:
        f.write(f'version = 2\nroot = "{root}/containerd/root"\nstate = "{root}/containerd/state"\n'
                f'[grpc]\naddress = "{csock}"\n[plugins."io.containerd.grpc.v1.cri"]\n'
                'sandbox_image = "cocoon.local/pause:latest"\nrestrict_oom_score_adj = true\n'
                f'[plugins."io.containerd.grpc.v1.cri".cni]\nbin_dir = "/usr/lib/cni"\nconf_dir = "{cni_conf_dir}"\n')
    log = open(f"{root}/containerd/log", "w")
    proc = subprocess.Popen(["containerd", "--config", f"{root}/containerd/config.toml"], stdout=log, stderr=log)
    for _ in range(200):
        if os.path.exists(csock):
            break
        time.sleep(0.05)
    sys.path.insert(0, os.path.join(repo, "images"))
    import oci_layout
    bb = oci_layout.busybox_layer(os.path.realpath(shutil.which("busybox")))
    lay = f"{root}/layouts"
    oci_layout.single(lay, "pause", [bb], {"Entrypoint": ["/bin/sleep"], "Cmd": ["2147483647"]})
    subprocess.run(["tar", "-C", f"{lay}/pause", "-cf", f"{root}/pause.tar", "."], check=True)
    r = subprocess.run(["ctr", "--address", csock, "-n", "k8s.io", "images", "import", "--base-name",
                        "cocoon.local/pause", f"{root}/pause.tar"], capture_output=True, text=True)
    if r.returncode != 0:
        proc.terminate()
        return None, proc, f"ctr import: {r.stderr.strip()}"
    argv = [crictl_bin, "--runtime-endpoint", f"unix://{csock}", "-t", "120s"]
    why = import_busybox(argv, images, root) if images else ""
    return (None if why else argv), proc, why


def start_cocoond(root, bindir, guest, netdir=None):
    """A release cocoond under ROOT (handler `cocoon`: TCG, 1 vCPU, 256 MiB; CNI from NETDIR when
    given) with the test busybox imported as cocoon.local/busybox:latest; returns (socket, process)."""
    sock = f"{root}/run/cocoon.sock"
    cni = f'[cni]\nconf_dir = "{netdir}"\n' if netdir else ""
    with open(f"{root}/config.toml", "w") as f:
        f.write(f'state_root = "{root}/state"\nrun_dir = "{root}/run"\n{cni}'
                f'[handlers.cocoon]\nbackend = "qemu"\nkernel = "{guest}/vmlinux"\ninitrd = "{guest}/initrd.cpio"\n'
                'memory_mib = 256\nvcpus = 1\naccel = "tcg"\n')
    proc = subprocess.Popen([f"{bindir}/cocoond", "--config", f"{root}/config.toml", "--log-level", "warning"])
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.02)
    return sock, proc


def import_busybox(peer_argv, images, root):
    """Imports the test busybox into the peer containerd as cocoon.local/busybox:latest; '' or why not."""
    csock = peer_argv[2].removeprefix("unix://")
    subprocess.run(["tar", "-C", f"{images}/busybox", "-cf", f"{root}/busybox.tar", "."], check=True)
    r = subprocess.run(["ctr", "--address", csock, "-n", "k8s.io", "images", "import", "--base-name",
                        "cocoon.local/busybox", f"{root}/busybox.tar"], capture_output=True, text=True)
    return f"ctr import: {r.stderr.strip()}" if r.returncode != 0 else ""


def pss_kib(pid):
    """A process's proportional set size (KiB) from /proc/PID/smaps_rollup; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def stop_all(procs):
    """Ends the runtimes a benchmark started, newest first."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def conflist(root, name, bridge, subnet, portmap=False):
    """One CNI conflist (bridge + host-local [+ portmap] + loopback) in ROOT/net.d, which both
    runtimes use, so their pods sit on the same bridge; returns the directory."""
    netdir = f"{root}/net.d"
    os.makedirs(netdir, exist_ok=True)
    plugins = [{"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                "ipam": {"type": "host-local", "dataDir": f"{root}/ipam", "ranges": [[{"subnet": subnet}]],
                         "routes": [{"dst": "0.0.0.0/0"}]}}]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    plugins.append({"type": "loopback"})
    with open(f"{netdir}/10-bench.conflist", "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": name, "plugins": plugins}, f)
    return netdir
