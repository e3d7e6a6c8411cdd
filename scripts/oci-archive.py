#!/usr/bin/env python3
"""oci-archive.py ROOTFS OUT.tar NAME:TAG [--entrypoint P] [--cmd A]... [--user U] [--title T]
— packs a root file system into an image archive that both `ctr images import` (OCI image
layout: oci-layout, index.json, blobs/) and `docker load` (manifest.json) read. No daemon, no
registry. Reproducible: entries sorted, owned by root, timestamps from SOURCE_DATE_EPOCH
(default 0), gzip without a name or time. The defaults make roster's image; the test node's
sandbox (pause) image is made with its own entrypoint (tests/control-plane/build.sh)."""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def layer(rootfs, mtime):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = []
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                entries.append(os.path.join(dirpath, name))
        for path in sorted(entries):
            arcname = os.path.relpath(path, rootfs)
            info = tar.gettarinfo(path, arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    diff = raw.getvalue()
    zipped = io.BytesIO()
    with gzip.GzipFile(fileobj=zipped, mode="wb", mtime=0, filename="") as gz:
        gz.write(diff)
    return diff, zipped.getvalue()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rootfs")
    ap.add_argument("out")
    ap.add_argument("ref")
    ap.add_argument("--entrypoint", default="/roster")
    ap.add_argument("--cmd", action="append")
    ap.add_argument("--user", default="65532:65532")
    ap.add_argument("--title", default="roster")
    ap.add_argument("--description", default="Organizations, projects and memberships as Kubernetes resources")
    args = ap.parse_args()
    rootfs, out, ref = args.rootfs, args.out, args.ref
    cmd = args.cmd if args.cmd is not None else (["run"] if args.entrypoint == "/roster" else [])
    version = ref.rsplit(":", 1)[-1]
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    diff, blob = layer(rootfs, mtime)
    created = "1970-01-01T00:00:00Z" if mtime == 0 else \
        __import__("datetime").datetime.fromtimestamp(mtime, __import__("datetime").timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {
        "org.opencontainers.image.title": args.title,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.description": args.description,
    }
    config = json.dumps({
        "created": created,
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
        "os": "linux",
        "config": {
            "User": args.user,
            "Entrypoint": [args.entrypoint],
            "Cmd": cmd,
            "WorkingDir": "/",
            # mimalloc returns a freed page to the OS at once, not at the thread's next
            # allocation: an idle controller's threads kept 20 MiB of pages freed after its
            # initial lists (BENCHMARKS.md, memory). The benches and make demo run it so too.
            "Env": ["PATH=/", "MIMALLOC_PURGE_DELAY=0"],
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(diff)]},
        "history": [{"created": created, "created_by": "scripts/image-rootfs.sh + scripts/oci-archive.py"}],
    }, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": digest(blob), "size": len(blob)}],
        "annotations": {"org.opencontainers.image.version": version},
    }, sort_keys=True, separators=(",", ":")).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MEDIA_MANIFEST, "digest": digest(manifest), "size": len(manifest),
            "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": version},
        }],
    }, sort_keys=True, separators=(",", ":")).encode()
    hexd = lambda d: digest(d).split(":", 1)[1]
    docker = json.dumps([{
        "Config": "blobs/sha256/" + hexd(config),
        "RepoTags": [ref],
        "Layers": ["blobs/sha256/" + hexd(blob)],
    }]).encode()
    files = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", index),
        ("manifest.json", docker),
        ("blobs/sha256/" + hexd(config), config),
        ("blobs/sha256/" + hexd(manifest), manifest),
        ("blobs/sha256/" + hexd(blob), blob),
    ]
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["blobs", "blobs/sha256"]:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            tar.addfile(info, io.BytesIO(data))
    print(f"{out}: {ref}, layer {len(blob) / 1e6:.1f} MB compressed, {len(diff) / 1e6:.1f} MB unpacked, "
          f"manifest {digest(manifest)}")


if __name__ == "__main__":
    main()
