#!/usr/bin/env bash
# Builds a read-only workspace template (an erofs image, lz4) and caches it
# by a hash of its inputs. Prints the image's path.
#
#   build-template.sh RECIPE            Debian root via debootstrap, per the recipe
#   build-template.sh --from-tar TAR NAME
#                                       a root filesystem tarball (e.g. `docker export`)
#
# Either way the template gets an unprivileged `agent` user (uid 1000) and
# a /etc/passwd entry for root; the guest agent itself is not put in it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${PADDOCK_CACHE:-$HOME/.cache/paddock}
epoch=${SOURCE_DATE_EPOCH:-1700000000}

die() { echo "build-template: $*" >&2; exit 1; }

# The Debian mirror this machine's apt already uses, unless told otherwise.
debian_mirror() {
    if [ -n "${PADDOCK_DEBIAN_MIRROR:-}" ]; then echo "$PADDOCK_DEBIAN_MIRROR"; return; fi
    local m
    m=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | awk '{print $1}' | grep -i debian | head -n1)
    [ -n "$m" ] || m=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    [ -n "$m" ] || die "no Debian mirror found in apt's sources; set PADDOCK_DEBIAN_MIRROR"
    echo "$m"
}

mode=recipe
if [ "${1:-}" = "--from-tar" ]; then
    [ $# -eq 3 ] || die "usage: $0 --from-tar TARBALL NAME"
    mode=tar; tarball=$2; name=$3
    [ -f "$tarball" ] || die "no such tarball: $tarball"
    [[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "template name must be [a-z0-9-]: $name"
    key=$( { sha256sum < "$tarball"; cat "$0"; } | sha256sum | cut -c1-16)
else
    [ $# -eq 1 ] || die "usage: $0 RECIPE | --from-tar TARBALL NAME"
    recipe=$1
    [ -f "$recipe" ] || die "no such recipe: $recipe"
    name=$(basename "$recipe" .recipe)
    SUITE= VARIANT=minbase PACKAGES=
    # The recipe is data: only these assignments are read from it.
    while IFS='=' read -r k v; do
        v=${v%\"}; v=${v#\"}
        case "$k" in
        SUITE) SUITE=$v ;;
        VARIANT) VARIANT=$v ;;
        PACKAGES) PACKAGES=$v ;;
        ''|\#*) ;;
        *) die "$recipe: unknown setting $k" ;;
        esac
    done < <(grep -v '^[[:space:]]*#' "$recipe" | grep -v '^[[:space:]]*$')
    [ -n "$SUITE" ] || die "$recipe: SUITE is required"
    key=$( { cat "$recipe" "$0"; } | sha256sum | cut -c1-16)
fi

out="$cache_root/templates/$name-$key.erofs"
if [ -f "$out" ]; then echo "$out"; exit 0; fi
for tool in mkfs.erofs chroot; do command -v $tool >/dev/null || die "$tool missing; run 'just deps'"; done
[ "$(id -u)" = 0 ] || die "building a root filesystem needs root"

work=$(mktemp -d "${TMPDIR:-/tmp}/paddock-template.XXXXXX")
trap 'umount -R "$work/root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"

if [ $mode = tar ]; then
    tar -C "$root" --numeric-owner -xf "$tarball"
else
    command -v debootstrap >/dev/null || die "debootstrap missing; run 'just deps'"
    include=$(echo "$PACKAGES" | tr ' ' ',')
    echo "build-template: debootstrap $SUITE ($VARIANT) with $include" >&2
    debootstrap --variant="$VARIANT" ${include:+--include="$include"} "$SUITE" "$root" "$(debian_mirror)" >&2
fi

# The agent user and a home it owns.
if ! grep -q '^agent:' "$root/etc/passwd"; then
    if [ -x "$root/usr/sbin/useradd" ]; then
        chroot "$root" /usr/sbin/useradd --create-home --uid 1000 --user-group --shell /bin/bash agent >&2
    else
        echo "agent:x:1000:1000:agent:/home/agent:/bin/sh" >> "$root/etc/passwd"
        echo "agent:x:1000:" >> "$root/etc/group"
        mkdir -p "$root/home/agent" && chown 1000:1000 "$root/home/agent"
    fi
fi
grep -q '^root:' "$root/etc/passwd" || echo "root:x:0:0:root:/root:/bin/sh" >> "$root/etc/passwd"
mkdir -p "$root/root" "$root/tmp" "$root/run" "$root/proc" "$root/sys" "$root/dev" "$root/mnt"
chmod 1777 "$root/tmp"
# What a read-only template has no use for.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
echo "paddock-template $name $key" > "$root/etc/paddock-template"

mkdir -p "$(dirname "$out")"
# mkfs.erofs reports every file; keep that for when it fails.
if ! mkfs.erofs -zlz4 -T"$epoch" -U 00000000-0000-0000-0000-000000000000 "$out.tmp" "$root" > "$work/mkfs.log" 2>&1; then
    tail -n 20 "$work/mkfs.log" >&2
    die "mkfs.erofs failed"
fi
mv "$out.tmp" "$out"
echo "$out"
