#!/usr/bin/env bash
# Fetch newer containerd builds (and kubectl) from Debian's own archive into the test environment's
# directory, without installing anything over the system's packages. Idempotent and cached.
#
# The test matrix runs criproxy against containerd 1.6 (Debian 12's own package), 1.7 (trixie) and
# 2.1 (sid). Debian 12 cannot install the newer packages (and must not: the system containerd stays),
# but their binaries run on its glibc. So: a private apt directory whose sources list copies this
# machine's Debian mirror with another suite, `apt-get download`, and `dpkg -x` into
#   $CRIPROXY_TESTENV_DIR/containerd-1.7, containerd-2.1, kubectl   (default /var/lib/criproxy-testenv)
# each with a VERSION file. A directory that already holds a matching version is left alone (no
# network). runc is not fetched: sid's runc needs a newer glibc; the system runc (1.1.5) is used.
#
# Usage: fetch-debian-binaries.sh [NAME...]   NAME is containerd-1.7, containerd-2.1 or kubectl
# (default: all three).
set -euo pipefail

DEST="${CRIPROXY_TESTENV_DIR:-/var/lib/criproxy-testenv}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# name -> "package suite version-prefix" (the newest version of the suite with that prefix is taken).
declare -A WANT=(
  [containerd-1.7]="containerd trixie 1.7."
  [containerd-2.1]="containerd sid 2.1."
  [kubectl]="kubectl sid 1."
)

log() { printf '[fetch-debian-binaries] %s\n' "$*"; }

# The machine's own Debian mirror: the first URI of a source that serves its release (not security).
debian_mirror() {
  local uri=""
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
    uri="$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources | grep -v -- '-security' | head -n1 || true)"
  fi
  if [[ -z "$uri" ]] && compgen -G '/etc/apt/sources.list*' >/dev/null; then
    uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
      | grep -v -- '-security' | head -n1 || true)"
  fi
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

APT_DIR="$DEST/apt"
apt_opts() {
  printf '%s\n' -o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d" \
    -o "Dir::State=$APT_DIR/state" -o "Dir::Cache=$APT_DIR/cache" -o "APT::Sandbox::User=root" \
    -o "Dir::Etc::Preferences=$APT_DIR/preferences" -o "Dir::Etc::PreferencesParts=$APT_DIR/preferences.d"
}

UPDATED=0
private_apt_update() {
  [[ "$UPDATED" == 1 ]] && return
  local mirror
  mirror="$(debian_mirror)"
  mkdir -p "$APT_DIR/sources.list.d" "$APT_DIR/preferences.d" "$APT_DIR/state/lists/partial" \
    "$APT_DIR/cache/archives/partial"
  : >"$APT_DIR/preferences"
  {
    printf 'deb [signed-by=%s] %s trixie main\n' "$KEYRING" "$mirror"
    printf 'deb [signed-by=%s] %s sid main\n' "$KEYRING" "$mirror"
  } >"$APT_DIR/sources.list"
  log "apt-get update (private lists: trixie and sid from $mirror)"
  mapfile -t opts < <(apt_opts)
  apt-get "${opts[@]}" -q update >/dev/null
  UPDATED=1
}

# The newest version of PACKAGE in SUITE starting with PREFIX (empty when none).
pick_version() {
  local pkg="$1" suite="$2" prefix="$3"
  mapfile -t opts < <(apt_opts)
  apt-cache "${opts[@]}" madison "$pkg" \
    | awk -F'|' -v s="/debian $suite/" -v p="$prefix" '{gsub(/ /, "", $2)} index($3, s) && index($2, p) == 1 {print $2}' \
    | sort -V | tail -n1
}

fetch() {
  local name="$1" pkg suite prefix
  read -r pkg suite prefix <<<"${WANT[$name]}"
  local dir="$DEST/$name"
  if [[ -f "$dir/VERSION" ]] && [[ "$(cat "$dir/VERSION")" == "$prefix"* ]]; then
    log "$name: $(cat "$dir/VERSION") already in $dir"
    return
  fi
  private_apt_update
  local version
  version="$(pick_version "$pkg" "$suite" "$prefix")"
  if [[ -z "$version" ]]; then
    log "$name: Debian $suite has no $pkg $prefix* any more; update WANT in $0" >&2
    return 1
  fi
  local tmp
  tmp="$(mktemp -d "$DEST/.fetch-$name.XXXXXX")"
  mapfile -t opts < <(apt_opts)
  log "$name: apt-get download $pkg=$version ($suite)"
  (cd "$tmp" && apt-get "${opts[@]}" -q download "$pkg=$version" >/dev/null)
  mkdir "$tmp/root"
  dpkg -x "$tmp"/*.deb "$tmp/root"
  printf '%s\n' "$version" >"$tmp/root/VERSION"
  rm -f "$tmp"/*.deb
  local check=(--version)
  [[ "$pkg" == kubectl ]] && check=(version --client)
  if ! "$tmp/root/usr/bin/$pkg" "${check[@]}" >/dev/null 2>&1; then
    log "$name: $pkg $version does not run on this machine" >&2
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$dir.old"
  [[ -e "$dir" ]] && mv "$dir" "$dir.old"
  mv "$tmp/root" "$dir"
  rm -rf "$dir.old" "$tmp"
  log "$name: $version unpacked into $dir"
}

if [[ "$(id -u)" != 0 ]]; then
  log "run as root (the binaries go to $DEST)" >&2
  exit 1
fi
mkdir -p "$DEST"
names=("$@")
[[ ${#names[@]} -eq 0 ]] && names=(containerd-1.7 containerd-2.1 kubectl)
for n in "${names[@]}"; do
  [[ -n "${WANT[$n]:-}" ]] || { log "unknown name $n (one of ${!WANT[*]})" >&2; exit 2; }
done
# One fetcher at a time (several checkouts may install at once).
exec 9>"$DEST/.fetch.lock"
flock 9
for n in "${names[@]}"; do
  fetch "$n"
done
