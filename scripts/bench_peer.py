"""containerd 1.6 + runc as the peer runtime a benchmark measures beside Cocoon, in the same run.

`start(root, cni_conf_dir)` starts containerd with its CRI plugin on a socket under ROOT (pause image:
busybox sleeping for ever, imported without a registry) and returns (crictl argv, process, why): argv
is None, with why, where containerd, runc or crictl is missing or does not start.
"""
import os, shutil, subprocess, sys, time

repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
crictl_bin = os.environ.get("CRICTL") or os.path.join(os.path.dirname(repo), "shared/tools/crictl")


def start(root, cni_conf_dir):
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
    return [crictl_bin, "--runtime-endpoint", f"unix://{csock}", "-t", "120s"], proc, ""
