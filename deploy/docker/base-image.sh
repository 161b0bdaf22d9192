#!/usr/bin/env bash
# Builds onnxserve-base:bookworm, a Debian bookworm minbase root filesystem holding python3 and
# python3-venv, for machines that cannot pull from a container registry but reach Debian's
# package mirror. The mirror is the host's own (its apt sources), not one written in here.
# Needs root and debootstrap. Usage: deploy/docker/base-image.sh [TAG]
set -euo pipefail
TAG="${1:-onnxserve-base:bookworm}"
SUITE=bookworm

mirror() {
  # The first non-security "URIs:" (deb822) or "deb URL" (one-line) entry of the host's sources.
  local files=(/etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list)
  local uri
  uri=$(grep -hE '^URIs:' "${files[@]}" 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb ' "${files[@]}" 2>/dev/null | grep -v security \
      | sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}' | head -n1 || true)
  fi
  [ -n "$uri" ] || { echo "base-image: no Debian mirror in the host's apt sources" >&2; exit 1; }
  echo "$uri"
}

command -v debootstrap >/dev/null || { echo "base-image: debootstrap is not installed" >&2; exit 1; }
ROOT=$(mktemp -d /var/tmp/onnxserve-base.XXXXXX)

unmount_all() {
  # debootstrap mounts /proc (and more) inside its target: unmount before removing anything.
  { grep -o " $ROOT/[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do
    umount -l "$mnt" || true
  done
}

cleanup() {
  unmount_all
  rm -rf --one-file-system "$ROOT" "$ROOT.log"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

MIRROR=$(mirror)
echo "base-image: debootstrap $SUITE from $MIRROR into $ROOT"
debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$ROOT" "$MIRROR" \
  >"$ROOT.log" 2>&1 || { tail -n 30 "$ROOT.log" >&2; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log"
unmount_all

# Trim what no container reads: docs, man pages, translations, apt's lists and caches, logs.
rm -rf "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
  "$ROOT"/usr/share/locale/* "$ROOT"/usr/share/lintian "$ROOT"/var/lib/apt/lists/* \
  "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/log/* "$ROOT"/tmp/*
find "$ROOT/usr/share/i18n" -mindepth 1 -delete 2>/dev/null || true
# And what a Python server never loads: glibc's iconv charset modules (Python has its own codecs),
# the 2to3 converter and pydoc's topic index (~13 MB together).
rm -rf "$ROOT"/usr/lib/*-linux-gnu/gconv "$ROOT"/usr/lib/python3.*/lib2to3 \
  "$ROOT"/usr/lib/python3.*/pydoc_data

tar --numeric-owner -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$TAG" >/dev/null
echo "base-image: built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
