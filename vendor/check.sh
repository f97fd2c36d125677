#!/usr/bin/env bash
# Checks the claim in vendor/README.md: vendor/sqlx-core is the crates.io release of
# sqlx-core plus vendor/sqlx-core.patch and nothing else. Re-creates it from the
# published .crate (sha256-verified), applies the patch, and fails on any difference.
# Run from anywhere; CI runs it from .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

name=sqlx-core
version=0.9.0
# The `cksum` of sqlx-core 0.9.0 in the crates.io index (what Cargo.lock would record;
# Cargo.lock has no checksum for it because [patch.crates-io] replaces it by a path).
sha256=05b44e85bf579a8eeb4ceaa77a3a523baf2bf0e9bac7e40f405d537b5d2d5ccb
vendored=vendor/$name
patch_file=vendor/$name.patch

fail() {
  echo "vendor/check.sh: $*" >&2
  exit 1
}

# The [patch] must be in use: cargo only warns (and uses the registry copy) when the
# vendored version no longer matches what sqlx asks for, e.g. after an sqlx upgrade.
# A patched crate's Cargo.lock entry has no `source` line.
lock_entry=$(awk -v n="$name" '
  /^\[\[package\]\]/ { inpkg = 0 }
  $0 == "name = \"" n "\"" { inpkg = 1 }
  inpkg && /^(version|source) = / { print }
' Cargo.lock)
[ "$lock_entry" = "version = \"$version\"" ] ||
  fail "Cargo.lock does not resolve $name to the vendored $version (got: ${lock_entry:-nothing})"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
crate=$tmp/$name-$version.crate

# Cargo's download cache first (no network), else crates.io.
cached=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "$name-$version.crate" \
  -print -quit 2>/dev/null || true)
if [ -n "$cached" ]; then
  cp "$cached" "$crate"
else
  curl -sSfL --retry 3 -o "$crate" "https://static.crates.io/crates/$name/$name-$version.crate" ||
    curl -sSfL --retry 3 -o "$crate" "https://crates.io/api/v1/crates/$name/$version/download" ||
    fail "cannot download $name $version from crates.io"
fi
echo "$sha256  $crate" | sha256sum --check --status ||
  fail "$name-$version.crate does not have the published sha256 $sha256"

tar -xzf "$crate" -C "$tmp"
release=$tmp/$name-$version
[ -d "$release" ] || fail "$name-$version.crate does not unpack to $name-$version/"

# What vendor/sqlx-core holds: every file of the .crate (including .cargo_vcs_info.json,
# which names the upstream commit, and Cargo.toml.orig), patched, except Cargo.lock:
# cargo ignores a dependency's lockfile, so it is not kept. Cargo's own markers
# (.cargo-ok from registry unpacking, .cargo-checksum.json from `cargo vendor`) are
# not needed for a [patch] path dependency and are not kept either; if one shows up,
# the diff below reports it.
rm -f "$release/Cargo.lock"

# No fuzz: the patch must fit the release exactly.
patch -d "$release" -p1 --forward --batch --fuzz=0 --no-backup-if-mismatch --quiet \
  <"$patch_file" || fail "$patch_file does not apply to the $name $version release"

if ! diff -r "$release" "$vendored" >"$tmp/diff"; then
  sed "s|$tmp/||g" "$tmp/diff" >&2
  fail "$vendored differs from the $name $version release + $patch_file (above)"
fi
echo "vendor/check.sh: $vendored = crates.io $name $version + $patch_file"
