#!/usr/bin/env bash
# An aarch64 (Raspberry Pi 4: Cortex-A72) Python with edgelm's runtime, on an x86 host,
# under QEMU user-mode emulation. Needs root for apt, unshare and mount.
#
#   scripts/arm64_emu.sh setup [ROOT]           Debian bookworm arm64 python3.11 in ROOT
#                                               (default /tmp/edgelm-arm64), plus the aarch64
#                                               wheels of edgelm's runtime dependencies and
#                                               edgelm itself (their size printed), then
#                                               those of its serve extra
#   scripts/arm64_emu.sh run [ROOT] -- ARGS     run ROOT's python3.11 with ARGS
#
# onnxruntime reads /proc/cpuinfo to pick its kernels and crashes on the host's x86
# text, so `run` shows it a Cortex-A72's through a bind mount in a private mount
# namespace. Emulation is 10-50x slower than a Pi: for correctness, not speed.
set -euo pipefail
cmd=${1:?usage: $0 setup|run [ROOT] [-- ARGS]}; shift
ROOT=/tmp/edgelm-arm64
if [ $# -gt 0 ] && [ "$1" != "--" ]; then ROOT=$1; shift; fi
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}

setup() {
  export DEBIAN_FRONTEND=noninteractive
  command -v qemu-aarch64-static >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq qemu-user-static >/dev/null; }
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq
  rm -rf "$ROOT" && mkdir -p "$ROOT/debs" "$ROOT/root" "$ROOT/site" "$ROOT/wheels"
  (cd "$ROOT/debs" && apt-get download -qq $(printf '%s:arm64 ' \
    libpython3.11-minimal python3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 libstdc++6 \
    zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0 libuuid1 libtinfo6 \
    libncursesw6 libreadline8 libcrypt1 libnsl2 libtirpc3 libdb5.3 libgssapi-krb5-2 libkrb5-3 \
    libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1))
  for deb in "$ROOT"/debs/*.deb; do dpkg -x "$deb" "$ROOT/root"; done
  # edgelm's runtime dependencies, exactly as pyproject.toml lists them, for aarch64
  mapfile -t deps < <("$PY" -c 'import tomllib,sys; [print(d) for d in tomllib.load(open(sys.argv[1],"rb"))["project"]["dependencies"]]' "$HERE/pyproject.toml")
  "$PY" -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \
    --platform manylinux2014_aarch64 -d "$ROOT/wheels" "${deps[@]}"
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$ROOT/wheels" "$HERE"
  for whl in "$ROOT"/wheels/*.whl; do "$PY" -m zipfile -e "$whl" "$ROOT/site"; done
  printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' 0 1 2 3 > "$ROOT/cpuinfo"
  du -sb "$ROOT"/wheels/*.whl | awk '{s+=$1} END {printf "wheels: %.1f MB\n", s/1e6}'
  du -sb "$ROOT/site" | awk '{printf "installed: %.1f MB\n", $1/1e6}'
  # the `serve` extra on top, measured apart from the runtime above
  mapfile -t serve < <("$PY" -c 'import tomllib,sys; [print(d) for d in tomllib.load(open(sys.argv[1],"rb"))["project"]["optional-dependencies"]["serve"]]' "$HERE/pyproject.toml")
  mkdir -p "$ROOT/serve-wheels"
  "$PY" -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \
    --platform manylinux2014_aarch64 -d "$ROOT/serve-wheels" "${serve[@]}"
  for whl in "$ROOT"/serve-wheels/*.whl; do
    [ -e "$ROOT/wheels/$(basename "$whl")" ] || "$PY" -m zipfile -e "$whl" "$ROOT/site"
  done
  du -sb "$ROOT"/serve-wheels/*.whl | awk '{s+=$1} END {printf "serve extra wheels: %.1f MB\n", s/1e6}'
  touch "$ROOT/.ready"
}

case "$cmd" in
  setup) setup ;;
  run)
    [ "${1:-}" = "--" ] && shift
    [ -f "$ROOT/.ready" ] || { echo "run '$0 setup $ROOT' first" >&2; exit 2; }
    export EMU_ROOT=$ROOT
    exec unshare -m --propagation private sh -c '
      mount --bind "$EMU_ROOT/cpuinfo" /proc/cpuinfo &&
      PYTHONPATH="$EMU_ROOT/site" exec qemu-aarch64-static -cpu cortex-a72 \
        -L "$EMU_ROOT/root" "$EMU_ROOT/root/usr/bin/python3.11" "$@"' emu "$@" ;;
  *) echo "usage: $0 setup|run [ROOT] [-- ARGS]" >&2; exit 2 ;;
esac
