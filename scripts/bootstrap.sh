#!/usr/bin/env bash
# Installs what Matrix Gate needs on a fresh Debian machine: Debian packages (when run as
# root and something is missing) and a virtual environment in .venv with the pinned
# Python packages.  Used by scripts/run-gate and scripts/test; safe to run again.
#   bootstrap.sh run   - what the gate itself needs
#   bootstrap.sh test  - plus what the tests use (chromium, postgresql, nix)
set -euo pipefail
cd "$(dirname "$0")/.."
purpose="${1:-run}"

debs=(git python3-venv qemu-utils qemu-system-x86)
if [ "$purpose" = test ]; then
  debs+=(chromium postgresql nix-bin)
fi
missing=()
# Only Debian-like hosts install packages here; under `nix develop` the flake provides them.
if [ -n "${IN_NIX_SHELL:-}" ] || ! command -v dpkg-query >/dev/null; then
  debs=()
fi
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ] 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: please install: sudo apt-get install ${missing[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
extras=""
[ "$purpose" = test ] && extras="[test]"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)$extras"
if [ ! -e "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
  touch "$stamp"
fi
# pip compiled Buildbot's modules; do the same for Matrix Gate's (an editable install), so a
# master run where it may not write src/ (or with PYTHONDONTWRITEBYTECODE=1) does not compile
# them from source at every start and checkconfig (~55 ms, 1.5 MB).  Quick when up to date.
.venv/bin/python -m compileall -q src/matrixgate >/dev/null
