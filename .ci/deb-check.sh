#!/usr/bin/env bash
# Builds the Debian package (cargo deb), installs it on this machine, checks what an
# operator relies on (binary, man page, conffile, credentials directory, unit that
# verifies and keeps its hardening, nothing enabled), then purges it and checks that
# none of its files is left. Called by .ci/run after the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "deb-check: FAILED: $*" >&2; exit 1; }

if dpkg -s wsvault >/dev/null 2>&1; then
  fail "a wsvault package is already installed; not touching it"
fi
existed_etc=no
[ -e /etc/wsvault ] && existed_etc=yes

if ! command -v cargo-deb >/dev/null 2>&1; then
  t0=$(date +%s)
  cargo install cargo-deb --locked
  echo "deb-check: cargo-deb installed in $(( $(date +%s) - t0 )) s"
fi
command -v man >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq man-db >/dev/null; }

t0=$(date +%s)
cargo deb
echo "deb-check: package built in $(( $(date +%s) - t0 )) s"
deb=$(realpath "$(ls -t "${CARGO_TARGET_DIR:-target}"/debian/wsvault_*.deb | head -n1)")
dpkg-deb -c "$deb"
files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }')

# Whatever happens below, the package goes again.
cleanup() { dpkg -s wsvault >/dev/null 2>&1 && apt-get purge -y -qq wsvault >/dev/null || true; }
trap cleanup EXIT

apt-get install -y -qq "$deb" >/dev/null
echo "deb-check: installed size $(dpkg-query -W -f='${Installed-Size}' wsvault) KiB"

version=$(wsvault --version)
[ "$version" = "wsvault $(awk -F'"' '/^version =/ {print $2; exit}' Cargo.toml)" ] \
  || fail "wsvault --version says '$version'"
[ "$(command -v wsvault)" = /usr/bin/wsvault ] || fail "wsvault is not /usr/bin/wsvault"
man -w wsvault | grep -q '/usr/share/man/man1/wsvault.1' || fail "man -w wsvault"
dpkg-query -W -f='${Conffiles}\n' wsvault | grep -q '/etc/wsvault/wsvault.toml' \
  || fail "/etc/wsvault/wsvault.toml is not a conffile"
[ "$(stat -c %a /etc/wsvault/credentials)" = 700 ] || fail "/etc/wsvault/credentials is not 0700"
for f in /usr/share/bash-completion/completions/wsvault /usr/share/zsh/vendor-completions/_wsvault \
         /usr/share/fish/vendor_completions.d/wsvault.fish; do
  [ -s "$f" ] || fail "missing completion $f"
done

unit=/lib/systemd/system/wsvault.service
[ -f "$unit" ] || fail "no $unit"
grep -q '^ExecStart=/usr/bin/wsvault run' "$unit" || fail "unit does not start /usr/bin/wsvault"
systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
rating=$(systemd-analyze security --offline=true "$unit" | awk -F: '/Overall exposure level/ { split($2, a, " "); print a[1] }')
awk -v r="$rating" 'BEGIN { exit !(r != "" && r <= 2.0) }' || fail "hardening exposure '$rating' > 2.0"
echo "deb-check: unit verifies, exposure $rating"
if ls /etc/systemd/system/*.wants/wsvault.service >/dev/null 2>&1; then
  fail "installing enabled the unit"
fi

apt-get purge -y -qq wsvault >/dev/null
for f in $files; do
  if [ -e "$f" ] && [ ! -d "$f" ]; then fail "$f is left after purge"; fi
done
if [ "$existed_etc" = no ] && [ -e /etc/wsvault ]; then fail "/etc/wsvault is left after purge"; fi
echo "deb-check: OK"
