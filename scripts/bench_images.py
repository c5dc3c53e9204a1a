"""scripts/bench images: PullImage of the ~100 MiB multi-layer test image from the local registry,
beside `skopeo copy` of the same image into a local OCI directory, in the same run.

Each run starts from an empty store: cocoon pulls with `cocoonctl pull` (call to return: download,
verify, store, unpack) after `rmi`, skopeo copies into a fresh directory. The EROFS block image that
follows each pull is timed separately. Fetch and unpack times come
from cocoond's own record (ImageStatus verbose). Medians over RUNS runs.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
bindir = os.environ["COCOON_BIN"]
IMAGE = "127.0.0.1:5000/big:latest"
images = json.load(open(os.environ.get("COCOON_TEST_IMAGES", "/var/lib/cocoon/test-images") + "/images.json"))
big = images["big"]
size = sum(l["size"] for l in big["layers"])


def ctl(*args):
    return subprocess.run([f"{bindir}/cocoonctl", args[0], "-r", f"unix://{sock}", *args[1:]],
                          check=True, capture_output=True, text=True).stdout


root = tempfile.mkdtemp(prefix="cocoon-bench-images-")
sock = f"{root}/run/cocoon.sock"
with open(f"{root}/config.toml", "w") as f:
    f.write(f'state_root = "{root}/state"\nrun_dir = "{root}/run"\n[handlers.cocoon]\nbackend = "qemu"\n')
daemon = subprocess.Popen([f"{bindir}/cocoond", "--config", f"{root}/config.toml", "--log-level", "warning"])
try:
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    pull_s, fetch_s, unpack_s, skopeo_s, block_s = [], [], [], [], []
    for i in range(runs):
        dest = f"{root}/oci-{i}"
        t0 = time.monotonic()
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{IMAGE}", f"oci:{dest}:latest"],
                       check=True, capture_output=True)
        skopeo_s.append(time.monotonic() - t0)
        shutil.rmtree(dest)

        t0 = time.monotonic()
        ctl("pull", "--no-progress", IMAGE)
        pull_s.append(time.monotonic() - t0)
        for _ in range(300):  # the EROFS block image is built right after the pull, off its path
            status = json.loads(ctl("inspecti", IMAGE))
            info = status["info"]["info"]
            info = json.loads(info) if isinstance(info, str) else info
            if info.get("blockImageSeconds") is not None:
                break
            time.sleep(0.1)
        fetch_s.append(info["fetchSeconds"])
        unpack_s.append(info["unpackSeconds"])
        block_s.append(info["blockImageSeconds"])
        ctl("rmi", IMAGE)
finally:
    daemon.terminate()
    daemon.wait()
    shutil.rmtree(root, ignore_errors=True)

med = statistics.median
mib = size / (1 << 20)
print(f"\nscripts/bench images: {runs} runs, medians; {IMAGE}: {len(big['layers'])} gzip layers, {mib:.1f} MiB compressed")
print(f"{'figure':44} {'cocoon':>8} {'skopeo':>8} {'ratio':>7}")
print(f"{'PullImage (cocoonctl pull, fetch+verify+unpack)':44} {med(pull_s):7.2f}s {med(skopeo_s):7.2f}s {med(pull_s) / med(skopeo_s):6.2f}x"
      f"   ({mib / med(pull_s):.0f} MiB/s; reference: skopeo copy docker:// -> oci: dir)")
print(f"{'  of which download + verify + store':44} {med(fetch_s):7.2f}s {med(skopeo_s):7.2f}s {med(fetch_s) / med(skopeo_s):6.2f}x"
      f"   ({mib / med(fetch_s):.0f} MiB/s)")
print(f"{'  unpack: layers applied (overlaps download)':44} {med(unpack_s):7.2f}s")
print(f"{'EROFS block image, built after the pull':44} {med(block_s):7.2f}s   (what a pod VM attaches; not in PullImage's time)")
print("target: pull <= 1.2x skopeo")
print("raw:", json.dumps({"pull_s": pull_s, "fetch_s": fetch_s, "unpack_s": unpack_s, "block_s": block_s, "skopeo_s": skopeo_s}))
