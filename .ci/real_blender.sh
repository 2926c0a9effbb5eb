#!/usr/bin/env bash
# The real `blender` program for the tests: Debian 13 "trixie" packages Blender 4.3.2, which runs on this Debian 12
# machine inside a debootstrap root (Debian's package registry only; needs root).
#
#   bash .ci/real_blender.sh setup                  # build the root once (cached), check `blender --version`
#   bash .ci/real_blender.sh run [--x] [--bind DIR]... -- CMD [ARG]...
#                                                   # CMD inside the root; --x: under a fresh Xvfb (DISPLAY set)
#   bash .ci/real_blender.sh root                   # print the root's path
#
# The root is cached outside the checkout: $BOOST_DEPTH_BLENDER_ROOT, default /var/cache/boost-depth/trixie-root.
# It is built in a temporary folder beside it and renamed only once `blender --version` works in it, so an
# interrupted build never leaves a half root behind, and concurrent builds wait for each other (flock).
#
# `run` makes the checkout, the base Python of the engine venv (<checkout>/.venv, home= in pyvenv.cfg) and each
# --bind DIR visible inside the root at the same paths. All mounts (those, /proc, /dev, /sys) are made in a
# private mount namespace (unshare): nobody else sees them, and they disappear when the command ends, whatever
# way it ends; the trap below unmounts them too. So the cached root never holds a bind mount while anyone could
# delete it, and deleting it can never reach the host's files (use `rm -rf --one-file-system` all the same).
# The command also runs in its own pid namespace (when it ends or its unshare is killed, everything it started
# goes: Xvfb, Blender, the engine) and network namespace (no network; Xvfb's sockets cannot clash with the host's).
# Setup needs the network (debootstrap, apt-get); `run` never does.
set -euo pipefail

CHECKOUT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${BOOST_DEPTH_BLENDER_ROOT:-/var/cache/boost-depth/trixie-root}
SUITE=trixie
# The mirror: debootstrap's default unless set (e.g. a local mirror).
MIRROR=${BOOST_DEPTH_DEBIAN_MIRROR:-}
# python3-numpy: Debian's blender does not depend on it, but Blender's own builds ship it (extensions use it)
PACKAGES=(blender python3-numpy xvfb xdotool x11-apps imagemagick procps libgl1-mesa-dri)
STAMP=.boost-depth-root  # in the root: the package list it was built with

die() { echo "real_blender: $*" >&2; exit 1; }
log() { echo "real_blender: $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount, chroot)"; }

# Is anything mounted at or below $1? (refuse to delete through a mount)
has_mounts() { findmnt -rn -o TARGET | awk -v p="$1" '$0 == p || index($0, p "/") == 1 { f = 1 } END { exit !f }'; }

remove_tree() {
  local dir=$1
  [ -e "$dir" ] || return 0
  has_mounts "$dir" && die "something is mounted under $dir; unmount it first (findmnt | grep $dir), not deleting"
  rm -rf --one-file-system "$dir"
}

# Folders that must never be bind-mounted over the root's own.
system_dir() {
  case $1 in
    / | /usr | /usr/local | /bin | /sbin | /lib | /lib32 | /lib64 | /etc | /var | /tmp | /proc | /sys | /dev | /run | /boot) return 0 ;;
  esac
  return 1
}

root_ok() {
  [ -x "$ROOT/usr/bin/blender" ] && [ -f "$ROOT/$STAMP" ] && [ "$(cat "$ROOT/$STAMP")" = "${PACKAGES[*]}" ]
}

# Run "$@" inside root $1 with /proc, /dev, /sys mounted, in a private mount namespace.
in_root_ns() {
  local root=$1; shift
  unshare --mount --propagation private -- bash -euc '
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --bind /dev "$root/dev"
    mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
    mount --bind /sys "$root/sys" && mount -o remount,bind,ro "$root/sys" 2>/dev/null || true
    exec chroot "$root" "$@"' _ "$root" "$@"
}

setup() {
  need_root
  mkdir -p "$(dirname "$ROOT")"
  exec 9>"$ROOT.lock"
  flock 9
  if root_ok; then
    local cached
    cached=$(in_root_ns "$ROOT" blender --version 2>/dev/null | head -1) || true
    if [[ "$cached" == Blender\ * ]]; then
      log "cached root $ROOT: $cached"
      return
    fi
    log "cached root $ROOT: \`blender --version\` fails there; building it again"
  fi
  local t0 build=$ROOT.build
  t0=$(date +%s)
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  remove_tree "$build"  # a build that was interrupted
  log "debootstrap $SUITE into $build"
  # in a private mount namespace: what debootstrap mounts in the root (/proc, /sys) goes with it, even if killed
  # shellcheck disable=SC2086  # no mirror argument: debootstrap's default
  unshare --mount --propagation private -- debootstrap --variant=minbase "$SUITE" "$build" $MIRROR >"$build.log" 2>&1 ||
    { tail -20 "$build.log" >&2; die "debootstrap failed (log: $build.log)"; }
  log "installing ${PACKAGES[*]} ($(($(date +%s) - t0)) s so far)"
  in_root_ns "$build" bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends ${PACKAGES[*]} && apt-get clean" >>"$build.log" 2>&1 ||
    { tail -20 "$build.log" >&2; die "apt-get install failed (log: $build.log)"; }
  local version
  version=$(in_root_ns "$build" blender --version 2>>"$build.log" | head -1) || true
  [[ "$version" == Blender\ * ]] || { tail -20 "$build.log" >&2; die "blender --version fails in $build"; }
  [ -e "$build/etc/mtab" ] || ln -s ../proc/self/mounts "$build/etc/mtab"  # Blender lists mounts through it
  echo "${PACKAGES[*]}" >"$build/$STAMP"
  if [ -e "$ROOT" ]; then  # an older root (other package list): replace it
    remove_tree "$ROOT"
  fi
  mv "$build" "$ROOT"
  rm -f "$build.log"
  log "built $ROOT in $(($(date +%s) - t0)) s: $version"
}

run() {
  need_root
  local xvfb=0 binds=()
  while (($#)); do
    case $1 in
      --x) xvfb=1; shift ;;
      --bind)
        system_dir "$(realpath "$2")" && die "--bind $2: a system folder would hide the root's own; bind a folder below it"
        binds+=("$(realpath "$2")"); shift 2 ;;
      --) shift; break ;;
      *) die "run: unknown option $1 (usage: run [--x] [--bind DIR]... -- CMD...)" ;;
    esac
  done
  (($#)) || die "run: no command"
  root_ok || die "no Blender root at $ROOT: run 'bash .ci/real_blender.sh setup' first"
  binds+=("$CHECKOUT")
  if [ -f "$CHECKOUT/.venv/pyvenv.cfg" ]; then  # the engine venv's base interpreter (e.g. under `pyenv root`)
    local home
    home=$(sed -n 's/^home *= *//p' "$CHECKOUT/.venv/pyvenv.cfg")
    if [ -n "$home" ]; then
      local base
      base=$(dirname "$(realpath "$home")")
      if system_dir "$base"; then  # e.g. Debian's own python3.11 in /usr: it cannot be shown inside the root
        log "warning: the engine venv's base Python is in $base, which cannot be mounted into the root; the engine"
        log "         will not run there (make .venv from a self-contained Python, e.g. pyenv's)"
      else
        binds+=("$base")
      fi
    fi
  fi
  unshare --mount --pid --net --fork --kill-child --propagation private -- bash -eu "${BASH_SOURCE[0]}" _ns "$ROOT" "$xvfb" "${#binds[@]}" \
    "${binds[@]}" "$@"
}

# Inside the private namespace: mount, then chroot; the trap unmounts on every exit path.
_ns() {
  local root=$1 xvfb=$2 n=$3; shift 3
  local binds=("${@:1:n}"); shift "$n"
  MOUNTED=()  # global: the EXIT trap runs after this function has returned
  cleanup() {  # deepest first
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTED[i]}" 2>/dev/null || true; done
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  mnt() { mount "$@"; MOUNTED+=("${!#}"); }
  mnt -t proc proc "$root/proc"
  mnt --bind /dev "$root/dev"
  mnt -t tmpfs -o mode=1777 shm "$root/dev/shm"
  mnt --bind /sys "$root/sys"
  local d
  # shorter paths first, so that a folder inside another bound one is mounted over it
  while IFS= read -r d; do
    [ -n "$d" ] || continue
    [ -d "$d" ] || die "--bind $d: not a folder"
    mkdir -p "$root$d"
    mnt --bind "$d" "$root$d"
  done < <(printf '%s\n' "${binds[@]}" | awk '{ print length($0) "\t" $0 }' | sort -n -s | cut -f2- | uniq)
  local status=0
  chroot "$root" bash "$CHECKOUT/.ci/real_blender.sh" _inside "$xvfb" "$@" || status=$?
  return "$status"
}

# Inside the root: optionally start Xvfb on a free display, run the command, stop Xvfb.
_inside() {
  local xvfb=$1; shift
  cd "$CHECKOUT"
  if [ "$xvfb" = 1 ]; then
    local fifo display
    [ -d "${TMPDIR:-}" ] || unset TMPDIR  # a host TMPDIR that is not bound into the root
    XVFB_TMP=$(mktemp -d -t boost-depth-xvfb.XXXXXX)  # global: used by the EXIT trap
    fifo=$XVFB_TMP/display
    mkfifo "$fifo"
    Xvfb -displayfd 3 -screen 0 "${BOOST_DEPTH_XVFB_SCREEN:-1600x900x24}" -nolisten tcp 3>"$fifo" \
      >"$XVFB_TMP/xvfb.log" 2>&1 &
    XVFB_PID=$!  # global: used by the EXIT trap
    trap 'kill "$XVFB_PID" 2>/dev/null; wait "$XVFB_PID" 2>/dev/null || true; rm -rf "$XVFB_TMP"' EXIT
    read -r -t 20 display <"$fifo" || { cat "$XVFB_TMP/xvfb.log" >&2; die "Xvfb did not start"; }
    export DISPLAY=:$display
  fi
  local status=0
  "$@" || status=$?
  return "$status"
}

case ${1:-} in
  setup) setup ;;
  run) shift; run "$@" ;;
  root) echo "$ROOT" ;;
  _ns) shift; _ns "$@" ;;
  _inside) shift; _inside "$@" ;;
  *) die "usage: $0 setup | run [--x] [--bind DIR]... -- CMD... | root" ;;
esac
