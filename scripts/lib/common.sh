# Shared helpers for gureum's shell scripts. Source it; do not run it.
# shellcheck shell=bash

# Repo root, found from this file's location so scripts work from any cwd.
GUREUM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GUREUM_TARGET="$GUREUM_ROOT/target"
# This script's own absolute path (fingerprints must not depend on how it
# was invoked).
SELF="$(readlink -f "$0")"

# Progress goes to stderr so stdout stays clean for results and consoles.
log()  { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die()  { printf '[%s] error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

need_root() { [[ $(id -u) -eq 0 ]] || die "$1 needs root (apt-get); run it as root or with sudo"; }

# Run scripts/setup-deps once per process tree; it is a no-op when all
# packages are present, but even the dpkg-query takes time we can skip.
ensure_deps() {
  [[ -n ${GUREUM_DEPS_OK:-} ]] && return 0
  "$GUREUM_ROOT/scripts/setup-deps"
  export GUREUM_DEPS_OK=1
}

# Kernel tree produced by scripts/images/debian-kernel (built on demand).
kernel_dir() {
  local dir="$GUREUM_TARGET/kernel/current"
  if [[ ! -e $dir/vmlinux || ! -e $dir/vmlinuz ]]; then
    "$GUREUM_ROOT/scripts/images/debian-kernel" >/dev/null
  fi
  readlink -f "$dir"
}
kernel_version() { basename "$(kernel_dir)"; }

# place_file SRC DEST: DEST becomes a copy of SRC (an image's files must
# lie inside its directory: `gureum image import` refuses symlinks out).
place_file() {
  [[ -L $2 ]] && rm -f "$2"
  cmp -s "$1" "$2" 2>/dev/null || cp "$1" "$2"
}

# Cheap content fingerprint of files/trees (paths, sizes, mtimes; symlinks
# followed) plus any extra words; a cached artifact is rebuilt when the
# fingerprint it was built from changes.
fingerprint() {
  local paths=() words=() a
  for a in "$@"; do
    if [[ -e $a ]]; then paths+=("$a"); else words+=("$a"); fi
  done
  { printf '%s\n' "${words[@]}"
    if (( ${#paths[@]} )); then
      find -L "${paths[@]}" -type f -printf '%p %s %T@\n' | LC_ALL=C sort
    fi
  } | md5sum | cut -c1-32
}
# fresh OUT FINGERPRINT: true when OUT exists and was built from FINGERPRINT.
fresh() { [[ -e $1 && -e $1.fp && $(<"$1.fp") == "$2" ]]; }
mark_fresh() { printf '%s\n' "$2" >"$1.fp"; }

# Populate a staging tree with busybox-static and one symlink per applet.
install_busybox() {
  local root=$1 bb=/bin/busybox applet
  [[ -x $bb ]] && "$bb" --list >/dev/null 2>&1 || die "$bb missing; run scripts/setup-deps"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin}
  cp "$bb" "$root/bin/busybox"
  # --list-full gives each applet's canonical dir (bin/, sbin/, usr/bin/ ...).
  while read -r applet; do
    [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
  done < <("$bb" --list-full)
}

# Copy a host executable (found in PATH or given as a path) into a staging
# root at the same absolute path, with every shared library ldd names and
# the dynamic loader, so it runs inside an initramfs.
install_binary() {
  local root=$1 src=$2 dest=${3:-} lib
  if [[ $src != */* ]]; then
    src=$(command -v "$src") || die "program '$2' not found on the host"
  fi
  [[ -f $src ]] || die "program '$src' not found"
  src=$(readlink -f "$src")
  dest=${dest:-$src}
  mkdir -p "$root$(dirname "$dest")"
  cp "$src" "$root$dest"
  # ldd prints "name => /path (addr)" and "/lib64/ld-linux... (addr)";
  # a static binary prints "not a dynamic executable" and needs nothing.
  while read -r lib; do
    [[ -e $root$lib ]] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done < <(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true)
}

# cpio newc + gzip of a staging tree, owned by root, reproducible order.
make_initramfs() {
  local root=$1 out=$2
  mkdir -p "$(dirname "$out")"
  (cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
     cpio --null --create --format=newc --owner=0:0 --quiet) |
    gzip -9 >"$out.tmp.$$"
  mv "$out.tmp.$$" "$out"
}

# The .ko files of MODULE... and their dependencies, dependencies first,
# each once, from the unpacked kernel tree KDIR (version KVER).
module_files() {
  local kdir=$1 kver=$2 m
  shift 2
  for m in "$@"; do
    modprobe -d "$kdir" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
  done | awk '!seen[$0]++'
}

# Copy MODULE... with their dependencies into DIR and list them, in load
# order, in DIR/load-order (read by the guests' and L1's /init).
install_modules() {
  local kdir=$1 kver=$2 dir=$3 ko
  shift 3
  mkdir -p "$dir"
  : >"$dir/load-order"
  while read -r ko; do
    cp "$ko" "$dir/"
    basename "$ko" >>"$dir/load-order"
  done < <(module_files "$kdir" "$kver" "$@")
  [[ -s $dir/load-order ]] || die "modules $* not found in $kdir"
}

# The aws CLI and boto3 (and, with `ensure_aws_cli moto`, moto's server for
# scripts/bench/api) in a virtualenv under the user's cache, shared by
# every checkout; prints the venv's bin directory. Tests find `aws` there
# (tests/endpoint_support). Installed once; later calls only check.
AWS_VENV="${GUREUM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gureum}/aws-venv"
ensure_aws_cli() {
  local want=(awscli boto3) probe="$AWS_VENV/bin/aws"
  if [[ ${1:-} == moto ]]; then
    want+=("moto[server]")
    probe="$AWS_VENV/bin/moto_server"
  fi
  mkdir -p "$(dirname "$AWS_VENV")"
  (
    # Two checkouts setting up at once share one venv: one installs.
    flock 9
    if [[ ! -x $probe ]]; then
      [[ -x $AWS_VENV/bin/python ]] || python3 -m venv "$AWS_VENV" ||
        die "python3 -m venv failed (Debian: apt-get install python3-venv)"
      log "installing ${want[*]} into $AWS_VENV"
      "$AWS_VENV/bin/pip" install -q "${want[@]}" >&2 || die "pip install ${want[*]} failed"
    fi
  ) 9>"$AWS_VENV.lock" || exit 1
  printf '%s\n' "$AWS_VENV/bin"
}
