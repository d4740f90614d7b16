#!/usr/bin/env bash
# Refresh the page's front-end libraries from the npm registry (run by hand when upgrading;
# the page and its tests never need npm). Each library's dist files, its LICENSE and its
# package.json go into devtower/web/static/vendor/<name>/; npm checks each tarball against
# the registry's integrity hash. No build chain: we vendor the libraries' own builds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENDOR=devtower/web/static/vendor
# name@version  files to keep from the package (relative to its root)
LIBS=(
  "uplot@1.6.32 dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE package.json"
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for entry in "${LIBS[@]}"; do
  read -r spec files <<<"$entry"
  name=${spec%@*}
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  mkdir -p "$work/$name" && tar -xzf "$work"/"$name"-*.tgz -C "$work/$name"
  rm -rf "${VENDOR:?}/$name" && mkdir -p "$VENDOR/$name"
  for f in $files; do cp "$work/$name/package/$f" "$VENDOR/$name/"; done
  echo "vendored $spec: $(ls "$VENDOR/$name" | tr '\n' ' ')"
done
