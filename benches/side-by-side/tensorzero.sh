#!/usr/bin/env bash
# Builds TensorZero's gateway at tag 2025.12.0 (Apache-2.0) beside the project, never vendored,
# and prints the binary's path. Newer tags download V8 during the build and fail offline.
#
# The tag builds offline once its one git dependency, `mime` at the commit its Cargo.toml names,
# is patched in as a path dependency (with that crate's `#![deny(warnings)]` dropped: today's
# compiler warns where the crate's old one did not), and with SQLX_OFFLINE=true pointing at the
# tag's `.sqlx/` directory (no database at build time).
#
# Sources: TENSORZERO_SRC and MIME_SRC name local checkouts (any git repository holding the tag
# and the commit); without them the two repositories are cloned from GitHub. The build lands
# in ~/.cache/aihub/tensorzero-2025.12.0 and is reused.
set -euo pipefail

TAG=2025.12.0
MIME_REV=1ef137c7358fc64e07c8a640e4e9ba2a784b7f7d
CACHE="${HOME}/.cache/aihub/tensorzero-$TAG"
BIN="$CACHE/target/release/gateway"
say() { printf '==> %s\n' "$*" >&2; }

if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE"

# A tree of `rev` from `repo` (local or remote) into `dir`, through a bare clone in the cache.
export_tree() {
  local repo=$1 rev=$2 dir=$3; shift 3
  local bare="$CACHE/$(basename "$dir").git"
  [ -d "$bare" ] || git clone -q --bare "$repo" "$bare"
  rm -rf "$dir" && mkdir -p "$dir"
  # `checkout` of the paths that build (the tag's examples hold large data files that a partial
  # mirror may not have).
  GIT_INDEX_FILE="$CACHE/index" git --git-dir="$bare" --work-tree="$dir" checkout "$rev" -- "$@"
  rm -f "$CACHE/index"
}

if [ ! -f "$CACHE/src/Cargo.toml" ]; then
  say "fetching TensorZero $TAG and mime $MIME_REV"
  export_tree "${TENSORZERO_SRC:-https://github.com/tensorzero/tensorzero}" "$TAG" "$CACHE/src" \
    Cargo.toml Cargo.lock .sqlx .cargo tensorzero-core gateway internal clients/rust clients/python \
    provider-proxy evaluations tensorzero-optimizers examples/integrations/cursor/feedback
  export_tree "${MIME_SRC:-https://github.com/hyperium/mime}" "$MIME_REV" "$CACHE/mime" .
  sed -i -E 's|mime = \{ git = "https://github.com/hyperium/mime", rev = "[0-9a-f]+",|mime = { path = "../mime",|' \
    "$CACHE/src/Cargo.toml"
  grep -q 'mime = { path = "../mime"' "$CACHE/src/Cargo.toml" || { echo "could not patch mime in" >&2; exit 1; }
  sed -i '/#!\[deny(warnings)\]/d' "$CACHE/mime/src/lib.rs"
fi

say "building TensorZero's gateway (release; about 30 minutes on 2 cores)"
(cd "$CACHE/src" && SQLX_OFFLINE=true SQLX_OFFLINE_DIR="$CACHE/src/.sqlx" CARGO_TARGET_DIR="$CACHE/target" \
  cargo build --release -q -p gateway --bin gateway)
echo "$BIN"
