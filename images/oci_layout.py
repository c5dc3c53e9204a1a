#!/usr/bin/env python3
"""Builds the OCI image layouts that the image-service tests pull (through scripts/registry).

Stdlib only, plus the `zstd` CLI for the one zstd layer. Everything is deterministic (entries sorted,
fixed mtime, numeric owners, gzip without a timestamp), so the same inputs give the same digests.

usage: oci_layout.py OUTDIR --busybox PATH [--big] [--only-big]

OUTDIR gets one OCI image layout per image (OUTDIR/NAME/{oci-layout,index.json,blobs/sha256/..}),
tagged `latest`, plus:
  OUTDIR/images.json            digests of every image (see summary() below)
  OUTDIR/multilayer.expect.json what the merged rootfs of multilayer:latest must (not) contain
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile

MTIME = 1704067200  # 2024-01-01T00:00:00Z, every tar entry
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_GZIP = MT_TAR + "+gzip"
MT_ZSTD = MT_TAR + "+zstd"
REF_NAME = "org.opencontainers.image.ref.name"

APPLETS = ["sh", "ls", "cat", "echo", "sleep", "uname", "id", "true", "false", "env", "wget", "nc",
           "ps", "mkdir", "rm", "touch", "hostname", "top", "dd"]


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# Layers

class E:
    """One tar entry. kind: file | dir | symlink | hardlink. Paths are absolute, stored relative."""

    def __init__(self, path, kind="file", data=b"", mode=None, uid=0, gid=0, target=None):
        self.path = path.strip("/")
        self.kind = kind
        self.data = data.encode() if isinstance(data, str) else data
        self.mode = mode if mode is not None else {"dir": 0o755, "symlink": 0o777}.get(kind, 0o644)
        self.uid, self.gid, self.target = uid, gid, target


def F(path, data, mode=0o644, uid=0, gid=0):
    return E(path, "file", data, mode, uid, gid)


def D(path, mode=0o755, uid=0, gid=0):
    return E(path, "dir", mode=mode, uid=uid, gid=gid)


def S(path, target):
    return E(path, "symlink", target=target)


def H(path, target):
    return E(path, "hardlink", target=target)


# Parents left out of every tar on purpose (as some image builders do): the unpacker must make them
# 0755 itself, whatever the daemon's umask.
UNLISTED_PARENTS = {"/implicit", "/implicit/sub"}


def tar_bytes(entries):
    """An uncompressed tar: parents are added as 0755 root dirs when not listed (except
    UNLISTED_PARENTS), entries sorted by path, hard links last (a hard link must follow its target)."""
    byname = {e.path: e for e in entries}
    for e in list(entries):
        parts = e.path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in byname and p not in UNLISTED_PARENTS:
                byname[p] = D(p)
    ordered = sorted((e for e in byname.values() if e.kind != "hardlink"), key=lambda e: e.path)
    ordered += sorted((e for e in byname.values() if e.kind == "hardlink"), key=lambda e: e.path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in ordered:
            ti = tarfile.TarInfo(e.path)
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = MTIME, e.uid, e.gid, "", ""
            ti.mode = e.mode
            if e.kind == "file":
                ti.type, ti.size = tarfile.REGTYPE, len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
                continue
            if e.kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif e.kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, e.target
            elif e.kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, e.target.strip("/")
            tf.addfile(ti)
    return buf.getvalue()


class Layer:
    def __init__(self, entries, compression="gzip", comment="", level=6):
        raw = entries if isinstance(entries, bytes) else tar_bytes(entries)
        self.diff_id = sha256(raw)
        self.comment = comment
        if compression == "gzip":
            self.blob, self.media_type = gzip.compress(raw, compresslevel=level, mtime=0), MT_GZIP
        elif compression == "zstd":
            self.blob = subprocess.run(["zstd", "-q", "-c", "-3", "-"], input=raw, check=True,
                                       stdout=subprocess.PIPE).stdout
            self.media_type = MT_ZSTD
        elif compression == "none":
            self.blob, self.media_type = raw, MT_TAR
        else:
            raise ValueError(compression)
        self.digest, self.size, self.raw_size = sha256(self.blob), len(self.blob), len(raw)


# ---------------------------------------------------------------------------------------------
# Layouts

class Layout:
    def __init__(self, outdir, name):
        self.final = os.path.join(outdir, name)
        self.dir = os.path.join(outdir, "." + name + ".tmp")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "blobs", "sha256"))

    def put(self, blob, media_type, **extra):
        d = sha256(blob)
        path = os.path.join(self.dir, "blobs", "sha256", d[7:])
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(blob)
        desc = {"mediaType": media_type, "digest": d, "size": len(blob)}
        desc.update(extra)
        return desc

    def image(self, layers, config=None, arch="amd64", variant=None, claimed=None):
        """Stores layers, config and manifest; returns (manifest descriptor, summary). With
        `claimed`, the config describes those layers instead (its diff_ids and history): an image
        whose config is a byte copy of another's while its blobs are its own."""
        described = claimed or layers
        cfg = {
            "created": CREATED,
            "architecture": arch,
            "os": "linux",
            "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in described]},
            "history": [{"created": CREATED, "created_by": "cocoon build-test-images: " + l.comment}
                        for l in described],
        }
        if variant:
            cfg["variant"] = variant
        cfg["config"].update(config or {})
        cfg_desc = self.put(canon(cfg), MT_CONFIG)
        layer_descs = [self.put(l.blob, l.media_type) for l in layers]
        manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cfg_desc,
                    "layers": layer_descs}
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        mdesc = self.put(canon(manifest), MT_MANIFEST)
        summary = {
            "manifest": mdesc["digest"], "manifest_size": mdesc["size"],
            "config": cfg_desc["digest"], "platform": platform,
            "layers": [{"digest": d["digest"], "size": d["size"], "mediaType": d["mediaType"],
                        "diff_id": l.diff_id, "uncompressed_size": l.raw_size}
                       for d, l in zip(layer_descs, layers)],
        }
        return mdesc, platform, summary

    def finish(self, top_desc):
        top = dict(top_desc)
        top["annotations"] = {REF_NAME: "latest"}
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [top]}
        with open(os.path.join(self.dir, "index.json"), "wb") as f:
            f.write(canon(index))
        with open(os.path.join(self.dir, "oci-layout"), "wb") as f:
            f.write(canon({"imageLayoutVersion": "1.0.0"}))
        shutil.rmtree(self.final, ignore_errors=True)
        os.rename(self.dir, self.final)


def single(outdir, name, layers, config=None, extra=None, claimed=None):
    lay = Layout(outdir, name)
    mdesc, platform, summ = lay.image(layers, config, claimed=claimed)
    lay.finish(mdesc)
    summ = {"ref": name + ":latest", "layout": name, "digest": mdesc["digest"],
            "mediaType": MT_MANIFEST, **summ}
    summ.update(extra or {})
    return summ


# ---------------------------------------------------------------------------------------------
# The images

def passwd(extra_users=(), extra_groups=()):
    users = ["root:x:0:0:root:/root:/bin/sh"] + list(extra_users) + \
            ["nobody:x:65534:65534:nobody:/nonexistent:/bin/false"]
    groups = ["root:x:0:"] + list(extra_groups) + ["nogroup:x:65534:", "nobody:x:65534:"]
    return [F("/etc/passwd", "\n".join(users) + "\n"), F("/etc/group", "\n".join(groups) + "\n")]


def is_static_elf(b):
    """True for a 64-bit little-endian ELF executable without a PT_INTERP (no dynamic loader)."""
    import struct
    if b[:4] != b"\x7fELF" or b[4] != 2 or b[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", b, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", b, 0x36)
    return all(struct.unpack_from("<I", b, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def busybox_layer(busybox):
    with open(busybox, "rb") as f:
        bb = f.read()
    if not is_static_elf(bb):
        sys.exit("oci_layout: %s is not a static x86-64 ELF (install busybox-static)" % busybox)
    entries = [F("/bin/busybox", bb, 0o755)] + [S("/bin/" + a, "busybox") for a in APPLETS]
    entries += passwd()
    entries += [F("/etc/hostname", "cocoon\n"), D("/tmp", 0o1777), D("/root", 0o700)]
    entries += [D(p) for p in ("/dev", "/proc", "/sys", "/etc", "/var", "/home", "/usr", "/bin")]
    return Layer(entries, "gzip", "busybox (busybox-static) with applet symlinks")


def multilayer_parts():
    """Layers 2.. of multilayer:latest and the expectations for the merged rootfs."""
    l2 = [
        F("/data/keep.txt", "keep\n"),
        F("/data/deleteme.txt", "deleted by a whiteout in layer 3\n"),
        F("/data/replaced.txt", "v1 from layer 2\n"),
        D("/opaque"),
        F("/opaque/old1.txt", "hidden by the opaque whiteout in layer 3\n"),
        D("/opaque/sub"),
        F("/opaque/sub/old2.txt", "hidden by the opaque whiteout in layer 3\n"),
        D("/removed-dir"),
        F("/removed-dir/inner.txt", "the whole directory is whited out in layer 4\n"),
        D("/links"),
        F("/links/target.txt", "hard link target\n"),
        H("/links/hardlink", "/links/target.txt"),
        S("/links/symlink", "target.txt"),
        S("/links/abs-symlink", "/data/keep.txt"),
        S("/links/dangling", "/does/not/exist"),
        D("/secret", 0o750, 1000, 1000),
        F("/secret/owned.txt", "mode 0640 owned by 1000:1000\n", 0o640, 1000, 1000),
        F("/bin/hello.sh", "#!/bin/sh\necho hello from multilayer\n", 0o755),
    ]
    l3 = [  # uncompressed tar
        F("/data/.wh.deleteme.txt", b""),
        D("/opaque"),
        F("/opaque/.wh..wh..opq", b""),
        F("/opaque/new.txt", "new content after the opaque whiteout\n"),
        F("/data/added-in-layer3.txt", "from the uncompressed tar layer\n"),
    ]
    l4_fixed = [  # zstd; /expected.txt is added by the caller
        F("/.wh.removed-dir", b""),
        F("/data/replaced.txt", "v2 from layer 4 (zstd)\n"),
        F("/zstd/hello.txt", "from the zstd layer\n", 0o600),
        F("/implicit/sub/file.txt", "under parents the layer does not list\n"),
    ]
    must_exist = [
        {"path": "/bin/busybox", "type": "file", "mode": "0755", "uid": 0, "gid": 0},
        {"path": "/bin/sh", "type": "symlink", "target": "busybox"},
        {"path": "/tmp", "type": "dir", "mode": "1777", "uid": 0, "gid": 0},
        {"path": "/data/keep.txt", "type": "file", "mode": "0644", "uid": 0, "gid": 0,
         "content": "keep\n"},
        {"path": "/data/replaced.txt", "type": "file", "mode": "0644",
         "content": "v2 from layer 4 (zstd)\n"},
        {"path": "/data/added-in-layer3.txt", "type": "file",
         "content": "from the uncompressed tar layer\n"},
        {"path": "/opaque", "type": "dir", "mode": "0755"},
        {"path": "/opaque/new.txt", "type": "file",
         "content": "new content after the opaque whiteout\n"},
        {"path": "/links/target.txt", "type": "file", "content": "hard link target\n"},
        {"path": "/links/hardlink", "type": "file", "content": "hard link target\n",
         "hardlink_of": "/links/target.txt"},
        {"path": "/links/symlink", "type": "symlink", "target": "target.txt"},
        {"path": "/links/abs-symlink", "type": "symlink", "target": "/data/keep.txt"},
        {"path": "/links/dangling", "type": "symlink", "target": "/does/not/exist"},
        {"path": "/secret", "type": "dir", "mode": "0750", "uid": 1000, "gid": 1000},
        {"path": "/secret/owned.txt", "type": "file", "mode": "0640", "uid": 1000, "gid": 1000,
         "content": "mode 0640 owned by 1000:1000\n"},
        {"path": "/bin/hello.sh", "type": "file", "mode": "0755"},
        {"path": "/zstd/hello.txt", "type": "file", "mode": "0600", "content": "from the zstd layer\n"},
        # parents a layer does not list: 0755 as Docker and containerd make them, whatever the umask
        {"path": "/implicit", "type": "dir", "mode": "0755", "uid": 0},
        {"path": "/implicit/sub", "type": "dir", "mode": "0755", "uid": 0},
        {"path": "/implicit/sub/file.txt", "type": "file", "mode": "0644",
         "content": "under parents the layer does not list\n"},
        {"path": "/expected.txt", "type": "file", "mode": "0644"},
    ]
    must_not_exist = [
        "/data/deleteme.txt", "/data/.wh.deleteme.txt",
        "/opaque/old1.txt", "/opaque/sub", "/opaque/sub/old2.txt", "/opaque/.wh..wh..opq",
        "/removed-dir", "/removed-dir/inner.txt", "/.wh.removed-dir",
    ]
    return l2, l3, l4_fixed, must_exist, must_not_exist


def expected_text(must_exist, must_not_exist):
    lines = ["# multilayer:latest: the merged rootfs must contain (path type mode uid:gid extra)"]
    for e in must_exist:
        extra = ""
        if "target" in e:
            extra = "-> " + e["target"]
        if "hardlink_of" in e:
            extra = "hard link of " + e["hardlink_of"]
        if "content" in e:
            extra = (extra + " " if extra else "") + "content=" + json.dumps(e["content"])
        owner = "%s:%s" % (e.get("uid", "-"), e.get("gid", "-"))
        lines.append("%s %s %s %s %s" % (e["path"], e["type"], e.get("mode", "-"), owner, extra))
    lines.append("# and must NOT contain")
    lines += must_not_exist
    return "\n".join(l.rstrip() for l in lines) + "\n"


def big_layers():
    """5 gzip layers of ~20 MiB of seeded pseudo-random data (incompressible, reproducible)."""
    layers = []
    for n in range(5):
        rng = random.Random(1000 + n)
        entries = [F("/big/layer%d/file%02d.bin" % (n, i), rng.randbytes(2 << 20)) for i in range(10)]
        layers.append(Layer(entries, "gzip", "big layer %d: 10 x 2 MiB pseudo-random" % n, level=1))
    return layers


def build(outdir, busybox, want_big, only_big):
    os.makedirs(outdir, exist_ok=True)
    summary_path = os.path.join(outdir, "images.json")
    summary = {}
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    if not only_big:
        bb = busybox_layer(busybox)
        summary["busybox"] = single(outdir, "busybox", [bb])

        l2, l3, l4, must, mustnot = multilayer_parts()
        text = expected_text(must, mustnot)
        l4 = l4 + [F("/expected.txt", text)]
        ml = [bb, Layer(l2, "gzip", "layer 2: files, links, owner 1000, dirs to delete"),
              Layer(l3, "none", "layer 3 (uncompressed): file whiteout, opaque dir"),
              Layer(l4, "zstd", "layer 4 (zstd): directory whiteout, replaced file, /expected.txt")]
        summary["multilayer"] = single(outdir, "multilayer", ml)
        expect = {"image": "multilayer:latest", "must_exist": must, "must_not_exist": mustnot}
        with open(os.path.join(outdir, "multilayer.expect.json"), "w") as f:
            json.dump(expect, f, indent=1)
            f.write("\n")

        users = passwd(["app:x:1000:1000::/home/app:/bin/sh"], ["app:x:1000:"])
        nr = Layer(users + [D("/home/app", 0o755, 1000, 1000)], "gzip", "user app 1000:1000")
        summary["nonroot"] = single(outdir, "nonroot", [bb, nr], {"User": "1000:1000"},
                                    {"user": "1000:1000"})

        tl = Layer([F("/tampered.txt", "this layer's blob is corrupted in the plain registry\n")],
                   "gzip", "tampered layer")
        summary["tampered"] = single(outdir, "tampered", [bb, tl],
                                     extra={"corrupted_layer": tl.digest})

        # The image-identity attack: impostor's config is a byte copy of genuine's (same image id),
        # its own layer is not the one the config's diff_ids name.
        genuine = [bb, Layer([F("/whoami.txt", "genuine\n")], "gzip", "the genuine layer")]
        summary["genuine"] = single(outdir, "genuine", genuine)
        forged = Layer([F("/whoami.txt", "impostor\n")], "gzip", "the genuine layer")
        summary["impostor"] = single(outdir, "impostor", [bb, forged], claimed=genuine,
                                     extra={"forged_layer": forged.digest})
        assert summary["impostor"]["config"] == summary["genuine"]["config"]

        lay = Layout(outdir, "multiarch")
        amd = Layer([F("/arch", "amd64\n")], "gzip", "/arch amd64")
        arm = Layer([F("/arch", "arm64\n")], "gzip", "/arch arm64 (no busybox: not runnable)")
        d_amd, p_amd, s_amd = lay.image([bb, amd], arch="amd64")
        d_arm, p_arm, s_arm = lay.image([arm], {"Cmd": ["/arch"]}, arch="arm64", variant="v8")
        index = {"schemaVersion": 2, "mediaType": MT_INDEX,
                 "manifests": [dict(d_amd, platform=p_amd), dict(d_arm, platform=p_arm)]}
        idesc = lay.put(canon(index), MT_INDEX)
        lay.finish(idesc)
        summary["multiarch"] = {"ref": "multiarch:latest", "layout": "multiarch",
                                "digest": idesc["digest"], "mediaType": MT_INDEX,
                                "index_size": idesc["size"],
                                "manifests": {"linux/amd64": s_amd, "linux/arm64/v8": s_arm}}
    if not want_big and not os.path.isdir(os.path.join(outdir, "big")):
        summary.pop("big", None)
    if want_big:
        summary["big"] = single(outdir, "big", [busybox_layer(busybox)] + big_layers())
    tmp = summary_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.write("\n")
    os.rename(tmp, summary_path)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--busybox", required=True, help="a static busybox binary")
    ap.add_argument("--big", action="store_true", help="also build big:latest (~100 MiB)")
    ap.add_argument("--only-big", action="store_true", help="build only big:latest")
    a = ap.parse_args()
    s = build(a.outdir, a.busybox, a.big or a.only_big, a.only_big)
    for name in sorted(s):
        print("%-10s %s" % (name, s[name]["digest"]))


if __name__ == "__main__":
    sys.exit(main())
