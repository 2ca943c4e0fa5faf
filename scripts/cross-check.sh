#!/usr/bin/env bash
# Type-checks every crate of the workspace, all targets (libs, bins, tests,
# benches, examples), for macOS and FreeBSD, on a Linux (Debian 12) machine
# with no rustup targets, no SDK and no sysroot: `cargo check` links
# nothing, so the standard library only has to be type-checked from source.
#
#   scripts/cross-check.sh [TARGET...]   (default: x86_64-apple-darwin x86_64-unknown-freebsd)
#
# How:
# * Debian's own compiler and cargo (`rustc-web`, `cargo-web`) and the
#   standard library's source of the very same version (`rust-web-src`),
#   installed with apt-get when missing. rustup's toolchains do not fit:
#   their compiler's version differs from that source's, and core fails.
# * `-Zbuild-std` type-checks core/alloc/std for the target from that
#   source; RUSTC_BOOTSTRAP=1 unlocks it on the stable Debian compiler.
#   Debian's binaries are called by path, since rustup's proxies come first
#   on PATH.
# * The target directory is outside the checkout (MIO_ECHO_XCHECK_DIR,
#   default ~/.cache/mio-echo-xcheck): a second run takes seconds.
# * First, a proof that the check is real: a scratch crate naming a
#   Linux-only libc constant must fail for every target.
#
# Fails on any error, and on any warning in the workspace's own code.
# Measured here: about 4 minutes cold (the install included), 10 s warm.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(x86_64-apple-darwin x86_64-unknown-freebsd)
export CARGO_TARGET_DIR="${MIO_ECHO_XCHECK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mio-echo-xcheck}"

need=0
for f in /usr/bin/rustc /usr/bin/cargo /usr/lib/rustlib/src/rust/library/std/src/lib.rs; do
  [ -e "$f" ] || need=1
done
if [ $need = 1 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    rustc-web cargo-web rust-web-src
fi

export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
CARGO=/usr/bin/cargo
src="$($RUSTC --print sysroot)/lib/rustlib/src/rust/library"
version=$($RUSTC -V | awk '{print $2}')
case "$(readlink -f "$src")" in
  */rustc-"$version"/library) ;;
  *) echo "cross-check: $src is not the source of rustc $version" >&2; exit 2 ;;
esac

check() { # check TARGET [cargo args...]
  local target=$1; shift
  # cc-rs would pass `-arch` to the host gcc for Apple targets (criterion's
  # `alloca` build script); nothing is linked, so plain host flags do.
  case $target in
    *-apple-*) export CRATE_CC_NO_DEFAULTS=1 ;;
    *) unset CRATE_CC_NO_DEFAULTS ;;
  esac
  "$CARGO" check -Zbuild-std=core,alloc,std,panic_abort --target "$target" "$@"
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/src"
printf '[package]\nname = "xcheck-proof"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nlibc = "0.2"\n' \
  > "$scratch/Cargo.toml"
printf 'pub fn f() -> i32 { libc::ENONET }\n' > "$scratch/src/lib.rs"
for t in "${TARGETS[@]}"; do
  if (cd "$scratch" && check "$t" -q) > "$scratch/log" 2>&1; then
    echo "cross-check: the proof crate checked for $t, so the check is not real" >&2
    exit 2
  fi
  grep -q 'cannot find value `ENONET`' "$scratch/log" || { cat "$scratch/log" >&2; exit 2; }
  echo "cross-check: $t rejects Linux-only libc::ENONET, as it should"
done

rc=0
for t in "${TARGETS[@]}"; do
  echo "== cargo check --workspace --all-targets --target $t"
  start=$(date +%s)
  if check "$t" --locked --workspace --all-targets --keep-going 2>&1 | tee "$scratch/$t.log"; then
    if grep -q '^warning' "$scratch/$t.log"; then
      echo "cross-check: $t: warnings (above)" >&2
      rc=1
    fi
  else
    rc=1
  fi
  echo "cross-check: $t done in $(( $(date +%s) - start )) s"
done
exit $rc
