"""OpenVINO backend: runs `openvino` artifacts (IR: `model.xml` + `model.bin`) with OpenVINO Runtime.

`pip install 'sapiens-edge[openvino-runtime]'`: the `openvino` package only (no torch, no NNCF).
Options:

- ``device``: "CPU" (default), "GPU", "NPU" (or an indexed one, "GPU.1"). A device OpenVINO does not
  see here is a PlatformUnavailableError listing those it sees; never a silent fallback (no AUTO).
- ``threads``: CPU inference threads (OpenVINO's default: one per physical core).
- ``inference_precision``: "f32", "bf16" or "f16", overriding the manifest's hint
  (`export_options.inference_precision`). The manifest's "reduced" resolves per device: bf16 on CPUs
  with bf16 arithmetic, fp16 on GPUs/NPUs, f32 on CPUs with neither; `describe()` says what ran.

- ``profile``: True to keep OpenVINO's per-op counters (``PERF_COUNT``); `op_profile()` then reads, after a
  run, each op the plugin ran: its kernel, the precision it computed in and its time (benchmarks.openvino_placement).

A recipe whose manifest lists `export_options.reduced_ops` (openvino-int8-hybrid) compiles in f32 with those op
types alone in the device's reduced precision (openvino_reduced), unless `inference_precision` is given.

In f32 the graph's bf16 round trips (RoPE's) are rewritten first as f32 arithmetic that rounds alike
(openvino_rounding: OpenVINO's ARM plugin would drop them), so f32 gives the same numbers on x86 and ARM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.errors import ArtifactError, OptionError, PlatformUnavailableError, SapiensEdgeError, require

from . import positive_int_option
from .openvino_reduced import reduce_ops
from .openvino_rounding import exact_bf16_round_trips

NAME = "openvino"
OPTIONS = ("device", "threads", "inference_precision", "profile")
DEVICES = ("CPU", "GPU", "NPU")
PRECISIONS = ("f32", "bf16", "f16")


def _openvino():
    return require("openvino", "openvino-runtime", "Running OpenVINO artifacts")


def resolve_device(device: str | None, available: list[str]) -> str:
    """'cpu'/'GPU'/'GPU.1'... checked against the devices OpenVINO sees (no fallback)."""
    name = "CPU" if device is None else str(device).upper()
    if name.split(".")[0] not in DEVICES:
        raise OptionError(f"Unknown OpenVINO device {device!r}; choose one of {', '.join(DEVICES)} "
                          f"(or an indexed one such as GPU.1).")
    # OpenVINO lists a single GPU as "GPU", several as "GPU.0", "GPU.1": "GPU" names the first of them.
    if name not in available and not (name in DEVICES and any(d.startswith(name + ".") for d in available)):
        raise PlatformUnavailableError(
            f"OpenVINO device {name!r} is not available on this machine, which has: {', '.join(available)}. "
            f"(GPU needs an Intel GPU and its compute runtime, NPU an Intel NPU and its driver.) Not falling back "
            f"to another device; pick one of those (e.g. device='CPU', --device CPU).")
    return name


def resolve_precision(hint: str, device: str, capabilities: list[str]) -> str:
    """The inference precision to ask for: `hint` ("f32", "bf16", "f16" or the manifest's "reduced")."""
    if hint != "reduced":
        return hint
    if not device.startswith("CPU"):
        return "f16"
    return "bf16" if "BF16" in capabilities else "f16" if "FP16" in capabilities else "f32"


def _compiles(core: Any, model: Any, device: str, config: dict[str, Any]) -> bool:
    """Whether OpenVINO compiles `model` with `config` (to tell a bad precision request from damaged files)."""
    try:
        core.compile_model(model, device, config)
    except RuntimeError:
        return False
    return True


class OpenVinoSession:
    def __init__(self, manifest: Any, artifact_dir: Path, *, device: str | None = None, threads: int | None = None,
                 inference_precision: str | None = None, profile: bool = False) -> None:
        ov = _openvino()
        self.manifest = manifest
        self.path = artifact_dir / manifest.model_file
        threads = positive_int_option("threads", threads, "OpenVINO's default")
        if inference_precision is not None and inference_precision not in PRECISIONS:
            raise OptionError(f"inference_precision must be one of {', '.join(PRECISIONS)} (or None for the "
                              f"manifest's), not {inference_precision!r}.")
        core = ov.Core()
        self.device = resolve_device(device, list(core.available_devices))
        if threads is not None and not self.device.startswith("CPU"):
            raise OptionError(f"threads applies to the CPU device, not {self.device}.")
        for file in (self.path, self.path.with_suffix(".bin")):
            if not file.is_file():
                raise ArtifactError(f"{file} is missing; copy the whole artifact folder.")
        self.hint = inference_precision or manifest.export_options.get("inference_precision", "f32")
        caps = list(core.get_property(self.device, "OPTIMIZATION_CAPABILITIES"))
        self.precision = resolve_precision(self.hint, self.device, caps)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.precision}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        if not isinstance(profile, bool):
            raise OptionError(f"profile must be True or False for the openvino backend, not {profile!r}.")
        self.profile = profile
        if profile:
            config["PERF_COUNT"] = True
        model = None
        try:
            model = core.read_model(str(self.path))
            # f32: RoPE's bf16 rounding as arithmetic every plugin keeps (ARM's drops bf16 Converts)
            self.bf16_rewritten = exact_bf16_round_trips(model) if self.precision == "f32" else 0
            self.reduced_ops = self._reduce(model, inference_precision, caps)
            self.compiled = core.compile_model(model, self.device, config)
        except RuntimeError as exc:  # OpenVINO's error for an unreadable XML or a short/garbled .bin, or ...
            if inference_precision is not None and self.precision != "f32" and model is not None \
                    and _compiles(core, model, self.device, {**config, "INFERENCE_PRECISION_HINT": "f32"}):
                # ... the precision the caller asked for (OpenVINO 2026.4 cannot build int8 IRs in f16 on CPUs)
                raise OptionError(f"OpenVINO {ov.get_version()} could not compile {self.path} for {self.device} with "
                                  f"inference precision {self.precision}: {str(exc).strip()[:300]}. The artifact "
                                  f"compiles in f32: pass another inference_precision (--inference-precision), or "
                                  f"none for the manifest's hint "
                                  f"({manifest.export_options.get('inference_precision', 'f32')}).") from exc
            raise ArtifactError(f"OpenVINO could not load {self.path} (+ .bin): {str(exc).strip()[:400]}. The files "
                                f"are damaged or were written by an incompatible OpenVINO; re-export the artifact.") \
                from exc
        self._check_io()
        self.request = self.compiled.create_infer_request()
        self.threads = threads
        self.version = ov.get_version()

    def _reduce(self, model: Any, asked: str | None, capabilities: list[str]) -> dict[str, Any] | None:
        """The manifest's `reduced_ops` in the device's reduced precision, when compiling its f32 hint (an
        explicit `inference_precision` applies to the whole model instead)."""
        op_types = self.manifest.export_options.get("reduced_ops") or []
        if not op_types or asked is not None or self.precision != "f32":
            return None
        precision = resolve_precision("reduced", self.device, capabilities)
        if precision == "f32":  # no bf16/f16 arithmetic here: everything f32
            return {"op_types": list(op_types), "precision": "f32", "ops": 0}
        return {"op_types": list(op_types), "precision": precision, "ops": reduce_ops(model, op_types, precision)}

    def _check_io(self) -> None:
        graph_in = [n for port in self.compiled.inputs for n in port.get_names()]
        graph_out = [n for port in self.compiled.outputs for n in port.get_names()]
        for kind, specs, names in (("input", self.manifest.inputs, graph_in), ("output", self.manifest.outputs,
                                                                               graph_out)):
            missing = [s.name for s in specs if s.name not in names]
            if missing or len(specs) != len(names):
                raise ArtifactError(f"{self.path.name} has {kind}s {names}, the manifest lists "
                                    f"{[s.name for s in specs]}; re-export the artifact.")

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.request is None:
            raise SapiensEdgeError("This OpenVINO session is closed; load the artifact again.")
        result = self.request.infer({k: np.ascontiguousarray(v) for k, v in inputs.items()})
        by_name = {n: v for port, v in result.items() for n in port.get_names()}
        return [np.array(by_name[spec.name]) for spec in self.manifest.outputs]  # a copy: the request reuses its own

    def op_profile(self) -> list[dict[str, Any]]:
        """Each op the plugin ran in the last run, from the compiled model's runtime graph (one op there is often
        several of the IR's, fused): name, type, kernel, the precision it computed in, and microseconds."""
        if not self.profile:
            raise OptionError("op_profile() needs the per-op counters: load the artifact with profile=True.")
        if self.request is None:
            raise SapiensEdgeError("This OpenVINO session is closed; load the artifact again.")
        out = []
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = {k: v.astype(str) for k, v in op.get_rt_info().items()}
            us = info.get("execTimeMcs", "")
            if us.isdigit():  # "not_executed": folded or a view
                out.append({"name": op.get_friendly_name(), "type": info.get("layerType", op.get_type_name()),
                            "kernel": info.get("primitiveType", ""), "precision": info.get("runtimePrecision", ""),
                            "us": int(us)})
        return out

    def describe(self) -> dict[str, Any]:
        used = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # what OpenVINO compiled for
        threads = self.compiled.get_property("INFERENCE_NUM_THREADS") if self.device.startswith("CPU") else None
        return {"backend": NAME, "version": self.version, "device": self.device, "threads": threads,
                "inference_precision": self.precision, "hint": self.hint, "compiled_precision": used,
                "bf16_round_trips_rewritten": self.bf16_rewritten, "reduced_ops": self.reduced_ops,
                "summary": f"OpenVINO {self.version.split('-')[0]} ({self.device}, {self.precision} inference"
                           f"{self._reduced_note()}"
                           f"{f', {threads} threads' if threads else ''})"}

    def _reduced_note(self) -> str:
        r = self.reduced_ops
        return f" but {r['ops']} {'/'.join(r['op_types'])} ops in {r['precision']}" if r and r["ops"] else ""

    def close(self) -> None:
        self.request = None


def open(manifest: Any, artifact_dir: str | Path, **options: Any) -> OpenVinoSession:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise OptionError(f"The openvino backend has no option(s) {', '.join(unknown)}; it takes: "
                          f"{', '.join(OPTIONS)}.")
    return OpenVinoSession(manifest, Path(artifact_dir), **{k: v for k, v in options.items() if v is not None})
