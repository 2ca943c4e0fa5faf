#!/usr/bin/env bash
# Installs the man pages and the bash, zsh and fish completions of
# echo-server, echo-client and echo-bench under PREFIX, as each binary
# writes them with its hidden `--generate` option (so they match the flags
# of the binaries they come from):
#
#   scripts/install-docs.sh [PREFIX]        (default: ~/.local, no root needed)
#
#   PREFIX/share/man/man1/NAME.1 (and echo-bench-MODE.1 for each mode)
#   PREFIX/share/bash-completion/completions/NAME
#   PREFIX/share/zsh/site-functions/_NAME
#   PREFIX/share/fish/vendor_completions.d/NAME.fish
#
# The binaries are taken from $BIN_DIR if set (binaries already built, or
# installed: BIN_DIR=~/.cargo/bin); otherwise `cargo build --release`
# builds them (a no-op if they are up to date) and target/release is used.
set -euo pipefail

case "${1:-}" in
-h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
    ;;
esac
if [ $# -gt 1 ]; then
    echo "usage: $0 [PREFIX]" >&2
    exit 2
fi

prefix=${1:-$HOME/.local}
root=$(cd "$(dirname "$0")/.." && pwd)
bins=(echo-server echo-client echo-bench)

if [ -z "${BIN_DIR:-}" ]; then
    cargo build --release --manifest-path "$root/Cargo.toml" \
        --bin echo-server --bin echo-client --bin echo-bench
    BIN_DIR=$root/target/release
fi
for name in "${bins[@]}"; do
    if [ ! -x "$BIN_DIR/$name" ]; then
        echo "error: no $BIN_DIR/$name (set BIN_DIR to where the binaries are)" >&2
        exit 1
    fi
done

man1=$prefix/share/man/man1
bash_dir=$prefix/share/bash-completion/completions
zsh_dir=$prefix/share/zsh/site-functions
fish_dir=$prefix/share/fish/vendor_completions.d
mkdir -p "$man1" "$bash_dir" "$zsh_dir" "$fish_dir"

for name in "${bins[@]}"; do
    bin=$BIN_DIR/$name
    # One page per command, and per mode for echo-bench.
    "$bin" --generate man --out-dir "$man1"
    "$bin" --generate bash >"$bash_dir/$name"
    "$bin" --generate zsh >"$zsh_dir/_$name"
    "$bin" --generate fish >"$fish_dir/$name.fish"
done

echo "installed under $prefix/share:"
(cd "$prefix/share" && ls -1 man/man1/echo-*.1 \
    bash-completion/completions/echo-* zsh/site-functions/_echo-* \
    fish/vendor_completions.d/echo-*.fish) | sed 's/^/  /'
echo "man finds the pages if $prefix/bin is on PATH, else with MANPATH=$prefix/share/man: (the colon keeps the system's pages);"
if [ "$prefix" = "$HOME/.local" ]; then
    echo "bash-completion (2.x) and fish load the completions from here by themselves;"
else
    echo "bash-completion and fish load the completions only if their search path has $prefix/share;"
fi
echo "zsh needs, in ~/.zshrc before compinit:  fpath=($zsh_dir \$fpath)"
