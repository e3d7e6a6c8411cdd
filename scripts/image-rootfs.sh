#!/usr/bin/env bash
# image-rootfs.sh BINARY DIR — lays out roster's container image: the binary at /roster, the
# shared libraries it links (as the dynamic loader resolves them here), an unprivileged user
# 65532, the system's CA roots (SMTP over TLS), and nothing else — no shell, no package manager.
# `make image` packs DIR into an OCI archive; the Containerfile copies DIR into a scratch image,
# so both produce the same layout.
set -euo pipefail
bin=$1
root=$2
rm -rf "$root"
mkdir -p "$root/etc/ssl/certs" "$root/tmp"
install -m 0755 "$bin" "$root/roster"
# Symbols make a quarter of the binary; panics keep their messages without them.
if command -v strip >/dev/null 2>&1; then
    strip --strip-all "$root/roster"
fi
# `ldd` names every library with its resolved path, and the loader itself by its own path.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
    while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$root/etc/passwd"
printf 'nonroot:x:65532:\n' > "$root/etc/group"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
chmod 1777 "$root/tmp"
