#!/bin/sh
# Builds wc.wasm from wc.c with clang and wasi-libc. On Debian or Ubuntu:
#   apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32
# Elsewhere, the WASI SDK's clang works the same (pass its --sysroot).
set -e
cd "$(dirname "$0")"
clang --target=wasm32-wasi -O2 -Wl,--strip-all -o wc.wasm wc.c
echo "wrote $(pwd)/wc.wasm ($(wc -c < wc.wasm) bytes)"
