#!/usr/bin/env bash
# Downloads the pretrained backbones neural-style and neural-style-pt use,
# checks them, and imports each into tessera's weights folder under the name
# `--weights` and the render's default look for: vgg19.h5, vgg16.h5, nin.h5.
#
#   tools/fetch-models.sh [WEIGHTS_DIR]   (default: $TESSERA_WEIGHTS_DIR, else models)
#
# Each model has several sources (the original caffemodel first, then
# neural-style-pt's conversion of the same weights); the first that
# downloads and checks is imported, the others are not fetched. A file
# already in the download folder is used as it is (checked the same way).
#
# Environment:
#   TESSERA              the tessera executable (default: tessera on PATH, else
#                        build/src/cli/tessera)
#   DOWNLOAD_DIR         where the downloads go (default: WEIGHTS_DIR/downloads)
#   FETCH_ONLY=1         download and verify, do not import
#   ONLY="vgg19 nin"     only these models (vgg19, vgg16, nin)
#   NIN_CAFFEMODEL_URL   another source for nin_imagenet_conv.caffemodel (its
#                        home is a Google Drive folder; see below)
#
# Checksums: no sha256 is published for these files. The two torchvision-style
# .pth names carry the first 8 hex digits of the file's sha256 (torch.hub's
# naming rule), and those are checked. For the others the script prints the
# sha256 it computed and says it is unverified; it is recorded in the .h5's
# provenance either way, so a later run can be compared with this one.
set -euo pipefail

cd "$(dirname "$0")/.."
weights_dir=${1:-${TESSERA_WEIGHTS_DIR:-models}}
download_dir=${DOWNLOAD_DIR:-$weights_dir/downloads}

if [[ -n "${TESSERA:-}" ]]; then
  tessera=$TESSERA
elif command -v tessera >/dev/null 2>&1; then
  tessera=$(command -v tessera)
else
  tessera=build/src/cli/tessera
fi

# model | file name | full sha256 ("-" = none published) | sha256 prefix in the name ("-" = none) | URLs (first that works)
# A model's sources are tried in this order.
# Sources:
#  - Oxford VGG's Caffe releases, as neural-style's models/download_models.sh fetches them.
#  - nin_imagenet_conv.caffemodel: the Caffe Model Zoo's NIN-Imagenet entry points to the
#    Google Drive folder 0B0IedYUunOQINEFtUi1QNWVhVVU; the file id below is the model in it.
#  - neural-style-pt's models/download_models.py: Justin Johnson's converted caffemodels
#    (with an S3 mirror) and ProGamerGov/pytorch-nin's nin_imagenet.pth.
sources=(
  "vgg19|VGG_ILSVRC_19_layers.caffemodel|-|-|http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_19_layers.caffemodel"
  "vgg19|vgg19-d01eb7cb.pth|-|d01eb7cb|https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth https://s3-us-west-2.amazonaws.com/jcjohns-models/vgg19-d01eb7cb.pth"
  "vgg16|VGG_ILSVRC_16_layers.caffemodel|-|-|http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_16_layers.caffemodel"
  "vgg16|vgg16-00b39a1b.pth|-|00b39a1b|https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth https://s3-us-west-2.amazonaws.com/jcjohns-models/vgg16-00b39a1b.pth"
  "nin|nin_imagenet_conv.caffemodel|-|-|${NIN_CAFFEMODEL_URL:-https://drive.google.com/uc?export=download&id=0B0IedYUunOQIdGRWOG5kRXpldFk}"
  "nin|nin_imagenet.pth|-|-|https://raw.githubusercontent.com/ProGamerGov/pytorch-nin/master/nin_imagenet.pth"
)
models=(vgg19 vgg16 nin)

log() { printf '%s\n' "$*" >&2; }

download() {  # url output
  local url=$1 output=$2
  if command -v curl >/dev/null 2>&1; then
    curl --fail --location --retry 3 --connect-timeout 30 --progress-bar -o "$output" "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget --tries=3 --timeout=30 -O "$output" "$url"
  else
    log "error: neither curl nor wget is installed"
    return 1
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# An HTML page instead of a model: a dead link or a download interstitial.
looks_like_html() {
  local head
  head=$(head -c 512 "$1" | tr -d '\0' | tr '[:upper:]' '[:lower:]')
  [[ $head == *"<!doctype html"* || $head == *"<html"* ]]
}

# Fails on a mismatch; says whether the file could be verified at all.
check_sha256() {  # file name full_sha prefix
  local file=$1 name=$2 full=$3 prefix=$4 actual
  actual=$(sha256_of "$file")
  if [[ $full != "-" ]]; then
    if [[ $actual != "$full" ]]; then
      log "error: $name: sha256 $actual, expected $full"
      return 1
    fi
    log "$name: sha256 $actual (verified)"
  elif [[ $prefix != "-" ]]; then
    if [[ $actual != "$prefix"* ]]; then
      log "error: $name: sha256 $actual does not start with $prefix, as its name says it should"
      return 1
    fi
    log "$name: sha256 $actual (first 8 hex digits verified against the file name)"
  else
    log "$name: sha256 $actual (unverified: no published checksum)"
  fi
}

fetch_one() {  # name full_sha prefix urls...
  local name=$1 full=$2 prefix=$3
  shift 3
  local target="$download_dir/$name" part="$download_dir/.$name.part" url
  if [[ -s $target ]]; then
    log "$name: already downloaded"
    check_sha256 "$target" "$name" "$full" "$prefix" || return 1
    return 0
  fi
  for url in "$@"; do
    log "$name: downloading $url"
    if download "$url" "$part"; then
      if looks_like_html "$part"; then
        log "warning: $name: $url returned a web page, not the model"
        continue
      fi
      if check_sha256 "$part" "$name" "$full" "$prefix"; then
        mv -f "$part" "$target"
        return 0
      fi
    fi
    log "warning: $name: $url failed"
  done
  rm -f "$part"
  log "error: $name: no source worked"
  return 1
}

mkdir -p "$download_dir" "$weights_dir"
if [[ -z "${FETCH_ONLY:-}" && ! -x $tessera ]] && ! command -v "$tessera" >/dev/null 2>&1; then
  log "error: tessera executable not found ('$tessera'); build it or set TESSERA, or run with FETCH_ONLY=1"
  exit 1
fi

for wanted in ${ONLY:-}; do
  [[ " ${models[*]} " == *" $wanted "* ]] || { log "error: ONLY: unknown model '$wanted' (one of: ${models[*]})"; exit 2; }
done

failed=()
for model in "${models[@]}"; do
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $model "* ]]; then
    continue
  fi
  output="$weights_dir/$model.h5"
  done_model=""
  for entry in "${sources[@]}"; do
    IFS='|' read -r source_model name full prefix urls <<<"$entry"
    [[ $source_model == "$model" ]] || continue
    # shellcheck disable=SC2086  # the URL list splits on spaces on purpose
    fetch_one "$name" "$full" "$prefix" $urls || continue
    if [[ -n "${FETCH_ONLY:-}" ]]; then
      done_model=yes
      break
    fi
    log "$name: importing as $model -> $output"
    if "$tessera" models import "$download_dir/$name" --arch "$model" -o "$output"; then
      done_model=yes
      break
    fi
    log "warning: $name: import failed"
  done
  [[ -n $done_model ]] || failed+=("$model")
done

if ((${#failed[@]})); then
  log "failed: ${failed[*]} (no source downloaded and imported)"
  if [[ " ${failed[*]} " == *" nin "* ]]; then
    log "nin_imagenet_conv.caffemodel lives in a Google Drive folder"
    log "(https://drive.google.com/folderview?id=0B0IedYUunOQINEFtUi1QNWVhVVU); download it by hand"
    log "into $download_dir, or set NIN_CAFFEMODEL_URL, and run this script again."
  fi
  exit 1
fi
log "done: weights in $weights_dir (list them with: $tessera models list --dir $weights_dir)"
