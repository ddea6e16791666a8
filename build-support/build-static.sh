#!/usr/bin/env bash
# Build the shipped binary: fully static musl, profile min-z -> target/static/ovirt-node-reg.
# Route A: rustup's musl target, when it is already installed (never downloading a target with rustup).
# Route B: Debian rustc-web + rust-web-src + -Zbuild-std + musl-gcc (docs/toolchain.md §3).
# The route B settings live here, not in .cargo/config.toml, so plain `cargo test` stays gnu.
# Both routes build without default features: the `test-hooks` feature (fault points, test-only
# jobs) stays out of the shipped binary; check-static.sh checks it did.
# `--features LIST` (bench.sh: what a feature costs) builds with those features into
# target/static/ovirt-node-reg+LIST instead, never over the shipped binary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=x86_64-unknown-linux-musl
PROFILE=min-z
PKG=ovirt-node-reg
OUT=target/static/$PKG
FEATURES=()
case "${1:-}" in
"") ;;
--features)
    [ -n "${2:-}" ] || { echo "build-static: --features needs a list, e.g. test-hooks" >&2; exit 2; }
    FEATURES=(--features "$2")
    OUT=$OUT+${2//,/+}
    ;;
*) echo "usage: build-static.sh [--features LIST]" >&2; exit 2 ;;
esac

if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    echo "[build-static] route A: rustup $(rustc --version) + $TARGET rust-std"
    cargo build --locked -p "$PKG" --profile "$PROFILE" --target "$TARGET" --no-default-features \
        "${FEATURES[@]}"
    # Tests and developers may point cargo elsewhere; the output goes where cargo put it.
    BUILT=${CARGO_TARGET_DIR:-target}/$TARGET/$PROFILE/$PKG
else
    echo "[build-static] route B: Debian $(/usr/bin/rustc --version) + -Zbuild-std + musl-gcc"
    command -v musl-gcc >/dev/null || { echo "musl-gcc missing: run build-support/setup.sh" >&2; exit 1; }
    # std's unwind crate always links -lunwind on musl; Debian's LLVM one needs the fortify shim.
    U=build-support/musl-unwind
    SYS_UNWIND=/usr/lib/llvm-14/lib/libunwind.a
    if [ ! -f "$U/libunwind.a" ] || [ "$U/fortify_shim.c" -nt "$U/libunwind.a" ] ||
        [ "$SYS_UNWIND" -nt "$U/libunwind.a" ]; then
        echo "[build-static] building $U/libunwind.a (LLVM libunwind + __fprintf_chk shim)"
        musl-gcc -O2 -fPIC -c "$U/fortify_shim.c" -o "$U/fortify_shim.o"
        rm -f "$U/libunwind.a"
        cp "$SYS_UNWIND" "$U/libunwind.a"
        chmod u+w "$U/libunwind.a"
        ar rcs "$U/libunwind.a" "$U/fortify_shim.o"
    fi
    # Own target dir: these flags would otherwise invalidate (and fight over) rustup's builds.
    # relocation-model=static: musl-gcc's specs turn static-pie into a binary with a PT_INTERP.
    # RUSTFLAGS would override the per-target flags, so drop any inherited ones.
    unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
    export CARGO_TARGET_DIR=$ROOT/target/route-b
    BIN_ENV=(RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
        CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=musl-gcc
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS=-C link-self-contained=no -C relocation-model=static -L native=$ROOT/$U")
    # Debian's cargo with Debian's rustc: rustup's 1.95 cannot compile the 1.96 std sources.
    env "${BIN_ENV[@]}" /usr/bin/cargo build --locked -p "$PKG" --profile "$PROFILE" \
        --target "$TARGET" --no-default-features "${FEATURES[@]}" -Zbuild-std=std,panic_abort
    BUILT=$CARGO_TARGET_DIR/$TARGET/$PROFILE/$PKG
fi

# Every QEMU test process runs this script (qemu-tests/src/qemu/host.rs) while others read
# $OUT to build their images: `install` over it left a moment with no executable there, and a
# test failed on it. An unchanged binary is left alone; a new one replaces it in one rename.
if ! cmp -s "$BUILT" "$OUT"; then
    mkdir -p "$(dirname "$OUT")"
    install -m 0755 "$BUILT" "$OUT.tmp.$$"
    mv -f "$OUT.tmp.$$" "$OUT"
fi
echo "[build-static] $OUT: $(stat -c %s "$OUT") bytes"
