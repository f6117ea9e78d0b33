#!/usr/bin/env python3
"""Builds a single-layer OCI image archive from local files, without a container engine.

The layer is a minimal distroless-like root filesystem: the given files, the shared libraries
their ELF binaries load (found with ldd, so glibc-linked Rust binaries run), /etc/passwd and
/etc/group with root and nonroot (65532), CA certificates and a sticky /tmp. The output is an OCI
image layout in a tar archive, which `ctr images import` accepts; the image name is carried in the
`io.containerd.image.name` annotation.

Usage:
  oci-image.py --name kubefront/edge:dev --out edge.tar \
      --file target/release/kubefront-edge:/usr/local/bin/kubefront-edge \
      --entrypoint /usr/local/bin/kubefront-edge [--cmd ARG]... [--env K=V]... [--user 65532]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def normalize(name: str) -> str:
    """Docker-style reference normalisation, as the kubelet applies to pod images."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


def shared_libraries(path: str) -> list[str]:
    """Absolute paths of the libraries an ELF file loads (empty for static binaries and scripts)."""
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return []
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    if out.returncode != 0:  # "not a dynamic executable"
        return []
    libs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])  # the dynamic loader
    return libs


class Layer:
    """A deterministic tar layer: sorted entries, fixed mtime, explicit ownership."""

    def __init__(self):
        self.entries: dict[str, tuple] = {}

    def add_dir(self, path: str, mode: int = 0o755, uid: int = 0):
        path = path.strip("/")
        parent = os.path.dirname(path)
        if parent and parent not in self.entries:
            self.add_dir(parent)
        if path and path not in self.entries:
            self.entries[path] = ("dir", mode, uid, None)

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0):
        path = path.strip("/")
        self.add_dir(os.path.dirname(path))
        self.entries[path] = ("file", mode, uid, data)

    def add_host_file(self, src: str, dest: str, mode: int | None = None):
        with open(src, "rb") as f:
            data = f.read()
        self.add_bytes(dest, data, mode if mode is not None else os.stat(src).st_mode & 0o7777)

    def tar_bytes(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                kind, mode, uid, data = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mode, info.uid, info.gid, info.mtime = mode, uid, uid, 0
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()


def blob(blobs: dict, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="image reference, e.g. kubefront/edge:dev")
    ap.add_argument("--out", required=True, help="output OCI archive (.tar)")
    ap.add_argument("--file", action="append", default=[], help="SRC:DEST[:MODE(octal)]")
    ap.add_argument("--dir", action="append", default=[], help="DEST[:MODE(octal)[:UID]] empty directory")
    ap.add_argument("--entrypoint", action="append", default=[])
    ap.add_argument("--cmd", action="append", default=[])
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--user", default="65532:65532")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("--expose", action="append", default=[], help="PORT[/tcp]")
    args = ap.parse_args()

    layer = Layer()
    for d in ("bin", "etc", "home", "usr/local/bin", "var"):
        layer.add_dir(d)
    layer.add_dir("home/nonroot", 0o700, 65532)
    layer.add_dir("tmp", 0o1777)
    layer.add_bytes("etc/passwd", PASSWD.encode())
    layer.add_bytes("etc/group", GROUP.encode())
    layer.add_bytes("etc/nsswitch.conf", b"hosts: files dns\n")
    if os.path.exists(CA_BUNDLE):
        layer.add_host_file(CA_BUNDLE, CA_BUNDLE, 0o644)
    for spec in args.dir:
        parts = spec.split(":")
        mode = int(parts[1], 8) if len(parts) > 1 else 0o755
        uid = int(parts[2]) if len(parts) > 2 else 0
        layer.add_dir(parts[0], mode, uid)
    for spec in args.file:
        parts = spec.split(":")
        if len(parts) < 2:
            ap.error(f"--file {spec}: expected SRC:DEST[:MODE]")
        src, dest = parts[0], parts[1]
        mode = int(parts[2], 8) if len(parts) > 2 else None
        layer.add_host_file(src, dest, mode)
        for lib in shared_libraries(src):
            if lib.strip("/") not in layer.entries:
                # ldd prints the path the loader resolves; store the real file under that path.
                layer.add_host_file(os.path.realpath(lib), lib, 0o755)

    diff = layer.tar_bytes()
    compressed = gzip.compress(diff, compresslevel=int(os.environ.get("OCI_IMAGE_GZIP_LEVEL", "1")), mtime=0)
    blobs: dict[str, bytes] = {}
    layer_desc = blob(blobs, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")

    ref = normalize(args.name)
    config = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0)),
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": args.user,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=" + CA_BUNDLE] + args.env,
            "Entrypoint": args.entrypoint or None,
            "Cmd": args.cmd or None,
            "WorkingDir": args.workdir,
            "ExposedPorts": {(p if "/" in p else p + "/tcp"): {} for p in args.expose} or None,
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(diff).hexdigest()]},
        "history": [{"created_by": "tests/cluster/oci-image.py"}],
    }
    config["config"] = {k: v for k, v in config["config"].items() if v is not None}
    config_desc = blob(blobs, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = blob(blobs, json.dumps(manifest, sort_keys=True).encode(), manifest["mediaType"])
    manifest_desc["annotations"] = {
        "io.containerd.image.name": ref,
        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
    }
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, "w") as tar:
        def put(name: str, data: bytes):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))

        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", json.dumps(index).encode())
        for digest, data in sorted(blobs.items()):
            put("blobs/sha256/" + digest.split(":", 1)[1], data)
    os.replace(tmp, args.out)
    print(f"{ref} {manifest_desc['digest']} layer={len(compressed)} bytes -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
