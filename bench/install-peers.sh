#!/usr/bin/env bash
# Builds the peers `switchboard bench report` compares against — whisper.cpp's `whisper-cli` and
# llama.cpp's `llama-bench` — from source, into bench/peers/ (git-ignored). Their sources come out of the
# sdists of the Python bindings on PyPI, which vendor them, pinned by sha256, so the same code is built
# on every machine without a git host. Also installs `wrk` and `fonts-dejavu-core` (Debian) for the
# webhook throughput test and the charts when apt-get is available. Every step is skipped when it is
# already done; re-run it after a failure.
#
#   bench/install-peers.sh            # build both (about 10 minutes on 2 cores)
#   PEERS_DIR=/elsewhere bench/install-peers.sh
#   PEERS_CACHE=/tmp/peers bench/install-peers.sh   # look for the tarballs there before downloading

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS_DIR="${PEERS_DIR:-$ROOT/bench/peers}"
DOWNLOADS="$PEERS_DIR/downloads"
JOBS="${JOBS:-2}"

# name|version|url|sha256|the folder inside the sdist that holds the C++ project
WHISPER="pywhispercpp|1.5.1|https://files.pythonhosted.org/packages/9f/35/610787a277e177e6b7983277a35a2969c0876b46c0d889bc6a0c4b4ac4a7/pywhispercpp-1.5.1.tar.gz|5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5|whisper.cpp"
LLAMA="llama_cpp_python|0.3.36|https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz|832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e|vendor/llama.cpp"

say() { printf '==> %s\n' "$*" >&2; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Downloads (or copies from $PEERS_CACHE) one sdist and checks its sha256; prints its path.
fetch() {
  local name="$1" version="$2" url="$3" sha="$4"
  local file="$DOWNLOADS/$(basename "$url")"
  mkdir -p "$DOWNLOADS"
  if [ -f "$file" ] && [ "$(sha256_of "$file")" = "$sha" ]; then
    echo "$file"
    return
  fi
  rm -f "$file" "$file.part"
  if [ -n "${PEERS_CACHE:-}" ] && [ -f "$PEERS_CACHE/$(basename "$url")" ]; then
    say "copying $name $version from $PEERS_CACHE"
    cp "$PEERS_CACHE/$(basename "$url")" "$file.part"
  else
    say "downloading $name $version"
    if command -v curl >/dev/null; then
      curl -fsSL --retry 3 -o "$file.part" "$url"
    else
      python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$url" "$file.part"
    fi
  fi
  local got
  got="$(sha256_of "$file.part")"
  if [ "$got" != "$sha" ]; then
    rm -f "$file.part"
    echo "sha256 mismatch for $name $version: expected $sha, got $got" >&2
    exit 1
  fi
  mv "$file.part" "$file"
  echo "$file"
}

# Unpacks the C++ project out of an sdist into $PEERS_DIR/src/<dest>; skipped when already there.
unpack() {
  local tarball="$1" inner="$2" dest="$PEERS_DIR/src/$3"
  if [ -f "$dest/CMakeLists.txt" ]; then
    return
  fi
  say "unpacking $inner from $(basename "$tarball")"
  # An sdist unpacks into one folder named like the file.
  local top
  top="$(basename "$tarball" .tar.gz)"
  rm -rf "$dest" "$dest.tmp"
  mkdir -p "$dest.tmp"
  tar xzf "$tarball" -C "$dest.tmp" "$top/$inner"
  mv "$dest.tmp/$top/$inner" "$dest"
  rm -rf "$dest.tmp"
}

# Configures and builds only the named targets, in Release, for this CPU; copies them to bin/.
build() {
  local project="$1" target="$2"
  shift 2
  local bin="$PEERS_DIR/bin/$target"
  if [ -x "$bin" ]; then
    say "$target is built ($bin)"
    return
  fi
  local src="$PEERS_DIR/src/$project" out="$PEERS_DIR/build/$project"
  say "building $target (cmake, Release, -j$JOBS)"
  mkdir -p "$out"
  cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF "$@" \
    >"$out/configure.log" || { cat "$out/configure.log" >&2; exit 1; }
  cmake --build "$out" --config Release --target "$target" -j "$JOBS"
  mkdir -p "$PEERS_DIR/bin"
  cp "$out/bin/$target" "$bin"
}

command -v cmake >/dev/null || { echo "cmake is needed (apt-get install cmake)" >&2; exit 1; }
command -v g++ >/dev/null || { echo "a C++ compiler is needed (apt-get install g++)" >&2; exit 1; }

IFS='|' read -r name version url sha inner <<<"$WHISPER"
if [ ! -x "$PEERS_DIR/bin/whisper-cli" ]; then
  tarball="$(fetch "$name" "$version" "$url" "$sha")"
  unpack "$tarball" "$inner" whisper.cpp
fi
build whisper.cpp whisper-cli \
  -DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_SERVER=OFF -DWHISPER_SDL2=OFF -DWHISPER_CURL=OFF

IFS='|' read -r name version url sha inner <<<"$LLAMA"
if [ ! -x "$PEERS_DIR/bin/llama-bench" ]; then
  tarball="$(fetch "$name" "$version" "$url" "$sha")"
  unpack "$tarball" "$inner" llama.cpp
fi
# llama-bench alone: its -d (depth) measures a prompt on top of a filled cache, which is what time to
# first token with a cached system prompt is, so no second tool is needed.
build llama.cpp llama-bench \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON

# wrk loads the webhook; DejaVu Sans draws the charts' text. Both are optional for the report.
apt_missing=""
command -v wrk >/dev/null || apt_missing="$apt_missing wrk"
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_missing="$apt_missing fonts-dejavu-core"
if [ -z "$apt_missing" ]; then
  say "wrk and the chart font are installed"
elif command -v apt-get >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  say "installing$apt_missing (apt-get)"
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq $apt_missing >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $apt_missing >/dev/null; } ||
    say "could not install$apt_missing: the report uses its built-in load generator / skips the charts"
else
  say "no apt-get: install$apt_missing yourself (webhook load generator, chart font)"
fi

# What was built, for the report.
{
  IFS='|' read -r name version url sha inner <<<"$WHISPER"
  echo "whisper-cli: whisper.cpp $(sed -n 's/^project("whisper.cpp" VERSION \(.*\))/\1/p' "$PEERS_DIR/src/whisper.cpp/CMakeLists.txt"), vendored in the $name $version sdist (sha256 $sha)"
  IFS='|' read -r name version url sha inner <<<"$LLAMA"
  echo "llama-bench: llama.cpp vendored in the $name $version sdist (sha256 $sha)"
} >"$PEERS_DIR/bin/versions.txt"

say "peers are in $PEERS_DIR/bin: $(ls "$PEERS_DIR/bin" | tr '\n' ' ')"
