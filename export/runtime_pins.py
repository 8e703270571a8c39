"""The app-side runtime an artifact needs (`export_options.app_runtime` in the manifest, and the artifact's README):
what an Android/iOS app pins to run it. Read from the written model file, so it says what the file holds; each
target module's `app_runtime(workdir, lowered)` calls the function for its kind of file.

* ONNX: the ai.onnx opset and the ops with later kernels (the minimum ONNX Runtime release), the contrib ops
  (com.microsoft; ONNX Runtime only), the IR version; whether the kit's ONNX Runtime Java release runs it.
* ExecuTorch: the release that wrote the .pte; the runtime (`org.pytorch:executorch-android`) must be that
  release or a newer one.
* TFLite: the flatbuffer's `min_runtime_version` (the converter's, from the op versions used) and the LiteRT
  release that checked the file.
* Core ML: the minimum OS (the deployment target).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The ONNX Runtime release that first implements each ai.onnx opset (onnxruntime.ai/docs/reference/
# compatibility.html): a model stamped with opset N needs at least that release.
ORT_FOR_OPSET = {17: "1.13.1", 18: "1.14.0", 19: "1.15.0", 20: "1.17.0", 21: "1.18.0", 22: "1.21.0", 23: "1.22.0"}
# Ops whose CPU kernels came after their opset did: Attention-23 and RMSNormalization-23 (microsoft/onnxruntime
# #25156 and #24875, released in 1.23; 1.22 stamps opset 23 without them).
ORT_FOR_OP = {"Attention": "1.23.0", "RMSNormalization": "1.23.0"}
KIT_ORT = "1.23.2"  # ONNX Runtime Java in the Android kit (android_demo/kit/pom.xml)
ORT_ANDROID = "com.microsoft.onnxruntime:onnxruntime-android"
EXECUTORCH_ANDROID = "org.pytorch:executorch-android"
LITERT_ANDROID = "com.google.ai.edge.litert:litert"


def _v(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def onnx_pins(path: Path) -> dict[str, Any]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    standard = {n.op_type for n in proto.graph.node if n.domain in ("", "ai.onnx")}
    contrib = sorted({f"{n.domain}.{n.op_type}" for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if opset not in ORT_FOR_OPSET:
        raise RuntimeError(f"opset {opset} is not in export.runtime_pins.ORT_FOR_OPSET (a bug: add its release).")
    needs = [ORT_FOR_OPSET[opset], *(ORT_FOR_OP[op] for op in sorted(standard & set(ORT_FOR_OP)))]
    minimum = max(needs, key=_v)
    kit = _v(minimum) <= _v(KIT_ORT)
    pin = (f"ONNX Runtime {minimum} or newer (Android: `{ORT_ANDROID}:{minimum}`+; opset {opset}"
           + (f", contrib ops {', '.join(contrib)}" if contrib else "") + "). "
           + (f"The Android kit's ONNX Runtime {KIT_ORT} runs it." if kit else
              f"Newer than the Android kit's ONNX Runtime {KIT_ORT}: raise the kit's pin, or re-export with "
              f"`--target-option opset=N` / `contrib_ops=no`."))
    return {"runtime": "onnxruntime", "min_version": minimum, "opset": opset, "ir_version": int(proto.ir_version),
            "contrib_ops": contrib, "kit_version": KIT_ORT, "kit_runs_it": kit, "pin": pin}


def executorch_pins(writer: str) -> dict[str, Any]:
    version = writer.split("+")[0]
    return {"runtime": "executorch", "min_version": version, "written_by": writer,
            "pin": f"ExecuTorch {version} or newer: the release that wrote this .pte (Android: "
                   f"`{EXECUTORCH_ANDROID}:{version}`; iOS: the ExecuTorch {version} Swift package), with the "
                   f"backend it was delegated to."}


def tflite_pins(path: Path, checked_with: str | None) -> dict[str, Any]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    minimum = None
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        if meta.Name() == b"min_runtime_version":
            minimum = bytes(model.Buffers(meta.Buffer()).DataAsNumpy()).split(b"\0")[0].decode() or None
    return {"runtime": "litert", "min_version": minimum, "checked_with": checked_with,
            "pin": f"TF Lite runtime {minimum or '(not recorded)'} or newer (the flatbuffer's min_runtime_version); "
                   f"checked with LiteRT (ai-edge-litert) {checked_with}. Android: `{LITERT_ANDROID}` (any LiteRT "
                   f"release) or `org.tensorflow:tensorflow-lite` of at least that version."}


def coreml_pins(deployment_target: str | None) -> dict[str, Any]:
    return {"runtime": "coreml", "min_version": deployment_target,
            "pin": f"Core ML on {deployment_target} or newer (the deployment target; macOS of the same generation)."}
