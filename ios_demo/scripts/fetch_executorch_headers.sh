#!/usr/bin/env bash
# Fetch the ExecuTorch C++ headers that MegrezDemo/Runner/MegrezRunner.mm includes, pinned to one release tag.
#
# ExecuTorch's Swift package ships the headers of extension/module, extension/tensor and the runtime in its
# `executorch` framework, and only Objective-C headers in `executorch_llm` (scripts/build_apple_frameworks.sh
# upstream). The wrapper also needs extension/llm/runner/*.h and the tokenizers' pytorch/tokenizers/*.h (submodule
# extension/llm/tokenizers), so this script puts a shallow checkout of the release at $EXECUTORCH_SOURCE, where the
# target's HEADER_SEARCH_PATHS look. Xcode runs it before compiling (preBuildScripts in project.yml); it can also
# be run by hand: `bash ios_demo/scripts/fetch_executorch_headers.sh`.
#
# - Done once: when the checkout is there and its stamp names $EXECUTORCH_TAG, it only re-checks the headers.
# - Atomic: it clones into a temporary folder next to the destination and renames it into place at the end, so an
#   interrupted or failed run leaves no half-written checkout at $EXECUTORCH_SOURCE.
# - It never deletes a checkout it did not write (one without its stamp): it says what to do instead.
#
# Environment: EXECUTORCH_SOURCE (Xcode passes the build setting; default: <repo>/third_party/executorch),
# EXECUTORCH_GIT_URL (default: ExecuTorch on GitHub; a mirror, or a local repository in tests).
# Written for macOS's /bin/bash 3.2 too: no associative arrays, no empty arrays under `set -u`.
set -euo pipefail

# The ExecuTorch release whose sources match the 1.5.0 binaries of the Swift package pinned in project.yml
# (revision 56cc93a96d5fb8d21554ec5f00fbad5a5b228bc4, the swiftpm-1.5.0 head). Change both together.
EXECUTORCH_TAG="v1.5.0"

# Every ExecuTorch header MegrezRunner.mm includes, as it includes it (tests/test_ios_sources.py checks this list
# against the file), plus the tokenizers' header that llm_runner_helper.h and multimodal_runner.h include.
REQUIRED_HEADERS=(
  executorch/extension/llm/runner/audio.h
  executorch/extension/llm/runner/image.h
  executorch/extension/llm/runner/irunner.h
  executorch/extension/llm/runner/llm_runner_helper.h
  executorch/extension/llm/runner/multimodal_input.h
  executorch/extension/llm/runner/multimodal_runner.h
  executorch/extension/llm/runner/stats.h
  executorch/extension/module/module.h
  executorch/extension/tensor/tensor.h
  pytorch/tokenizers/tokenizer.h
)

TOKENIZERS_SUBMODULE="extension/llm/tokenizers"
STAMP_NAME=".megrez-headers-stamp"

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
dest="${EXECUTORCH_SOURCE:-$repo_root/third_party/executorch}"
dest="${dest%/}"
git_url="${EXECUTORCH_GIT_URL:-https://github.com/pytorch/executorch.git}"
parent=$(dirname "$dest")

fail() {
  local line
  for line in "$@"; do
    echo "error: $line" >&2  # Xcode lists lines starting with "error:" as build errors
  done
  exit 1
}

by_hand() {
  [[ ! -e "$dest" ]] || echo "  rm -rf \"$dest\"    # the incomplete or older checkout this script wrote"
  echo "  git clone --depth 1 --branch $EXECUTORCH_TAG https://github.com/pytorch/executorch.git \"$dest\""
  echo "  git -C \"$dest\" submodule update --init --depth 1 $TOKENIZERS_SUBMODULE"
  echo "  echo $EXECUTORCH_TAG > \"$dest/$STAMP_NAME\""
}

# Where an included header is, relative to the checkout.
header_path() {
  case "$1" in
    executorch/*) echo "${1#executorch/}" ;;
    pytorch/tokenizers/*) echo "$TOKENIZERS_SUBMODULE/include/$1" ;;
    *) echo "no rule for <$1> in fetch_executorch_headers.sh" ;;
  esac
}

# Fails, naming the first missing header, unless every required header is in the checkout at $1.
verify() {
  local header path
  for header in "${REQUIRED_HEADERS[@]}"; do
    path=$(header_path "$header")
    [[ -f "$1/$path" ]] || fail "ExecuTorch $EXECUTORCH_TAG has no $path (#include <$header> in MegrezRunner.mm;" \
      "checked in $1). Did the header move in this release? Fix MegrezRunner.mm, or EXECUTORCH_TAG in" \
      "$script_dir/fetch_executorch_headers.sh."
  done
}

stamp_tag() {
  [[ -f "$1/$STAMP_NAME" ]] && head -n 1 "$1/$STAMP_NAME" || true
}

# HEADER_SEARCH_PATHS holds $(EXECUTORCH_SOURCE)/.., so `#include <executorch/...>` resolves only in a folder of
# that name.
[[ "$(basename "$dest")" == "executorch" ]] ||
  fail "EXECUTORCH_SOURCE ($dest) must be a folder named executorch: the includes read <executorch/...>."

# Already fetched: the fast path (every build after the first).
if [[ -f "$dest/extension/llm/runner/multimodal_runner.h" && -d "$dest/$TOKENIZERS_SUBMODULE/include" &&
      "$(stamp_tag "$dest")" == "$EXECUTORCH_TAG" ]]; then
  verify "$dest"
  touch "$dest/$STAMP_NAME"  # newer than this script: Xcode's dependency check then skips the phase
  exit 0
fi

# An empty folder (made by hand, or by a tool for the stamp's folder) is as good as none.
if [[ -d "$dest" && -z "$(ls -A "$dest")" ]]; then
  rmdir "$dest"
fi
previous=""
if [[ -e "$dest" ]]; then
  old_tag=$(stamp_tag "$dest")
  if [[ -z "$old_tag" ]]; then
    fail "$dest exists but was not written by this script (no $STAMP_NAME), so it is left alone." \
      "If it is a checkout of ExecuTorch $EXECUTORCH_TAG with the $TOKENIZERS_SUBMODULE submodule, mark it:" \
      "  echo $EXECUTORCH_TAG > \"$dest/$STAMP_NAME\"" \
      "otherwise move it away and build again (the build fetches $EXECUTORCH_TAG)."
  fi
  previous="$old_tag"  # ours, for another tag (or incomplete): replaced below, once the new one is complete
fi

command -v git >/dev/null 2>&1 ||
  fail "git not found: install Xcode's command line tools (xcode-select --install), then build again."

mkdir -p "$parent"
# Temporary folders of runs killed outright (SIGKILL: no trap runs) more than an hour ago.
find "$parent" -maxdepth 1 -name '.executorch-fetch.*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true
tmp=$(mktemp -d "$parent/.executorch-fetch.XXXXXX")
chmod u=rwx,go=rx "$tmp"  # mktemp's 0700 would stay on the checkout
old=""
cleanup() {
  rm -rf "$tmp"
  [[ -z "$old" ]] || rm -rf "$old"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

echo "Fetching ExecuTorch $EXECUTORCH_TAG headers (sources, shallow) from $git_url into $dest${previous:+ (replacing $previous)}"
if ! git -c advice.detachedHead=false clone --quiet --depth 1 --branch "$EXECUTORCH_TAG" "$git_url" "$tmp"; then
  {
    echo "error: could not clone ExecuTorch $EXECUTORCH_TAG from $git_url (no network, or no such tag?)."
    echo "error: The first build needs network once. To fetch the headers by hand, run in a terminal:"
    by_hand
    echo "error: then build again."
  } >&2
  exit 1
fi
if ! git -C "$tmp" submodule update --quiet --init --depth 1 "$TOKENIZERS_SUBMODULE"; then
  {
    echo "error: could not fetch ExecuTorch's $TOKENIZERS_SUBMODULE submodule (no network?). By hand:"
    by_hand
  } >&2
  exit 1
fi
verify "$tmp"
{
  echo "$EXECUTORCH_TAG"
  echo "executorch $(git -C "$tmp" rev-parse HEAD)"
  echo "tokenizers $(git -C "$tmp/$TOKENIZERS_SUBMODULE" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "fetched from $git_url by ios_demo/scripts/fetch_executorch_headers.sh"
} >"$tmp/$STAMP_NAME"

if [[ -n "$previous" ]]; then
  old="$tmp.old"
  mv "$dest" "$old"
elif [[ -e "$dest" ]]; then
  fail "$dest appeared while fetching (another build?): build again."
fi
mv "$tmp" "$dest"  # a rename within one folder: the checkout appears whole or not at all
echo "ExecuTorch $EXECUTORCH_TAG headers are in $dest"
