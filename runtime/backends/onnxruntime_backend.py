"""ONNX Runtime backend: runs `onnx` artifacts on the execution provider the caller names.

Providers are never guessed and never fall back silently: asking for one this installation
lacks, or one ONNX Runtime then fails to initialise, is an error that says what is installed and
which package provides the requested provider. (Per-node placement on the CPU provider for ops
the accelerator lacks is normal ONNX Runtime behaviour and is reported by ``describe()``.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.errors import (
    ArtifactError,
    OptionError,
    PlatformUnavailableError,
    ProviderUnavailableError,
    SapiensEdgeError,
    require,
)

from . import positive_int_option

NAME = "onnxruntime"

# --provider value -> ONNX Runtime provider name
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
# what to install to get each provider
PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu (NVIDIA GPU, CUDA 12 + cuDNN 9; install it instead of "
                             "onnxruntime: pip uninstall onnxruntime && pip install onnxruntime-gpu)",
    "TensorrtExecutionProvider": "onnxruntime-gpu together with NVIDIA TensorRT (pip install onnxruntime-gpu "
                                 "tensorrt; onnxruntime-gpu replaces onnxruntime)",
    "CoreMLExecutionProvider": "the standard onnxruntime wheel on macOS (pip install onnxruntime on a Mac); "
                               "CoreML exists only on Apple platforms",
}
GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
OPTIONS = ("provider", "threads", "graph_optimization", "profile", "provider_options", "pieces")

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int32)": "int32",
              "tensor(int64)": "int64", "tensor(bfloat16)": "bfloat16"}


def _import_ort():
    return require("onnxruntime", "onnx-runtime", "Running ONNX artifacts")


def resolve_provider(provider: str | None, available: list[str]) -> str:
    """Map 'cpu'/'cuda'/'tensorrt'/'coreml' (or a full ONNX Runtime provider name) to the provider
    name, and check this installation has it."""
    key = "cpu" if provider is None else str(provider)
    if key.lower() in PROVIDERS:
        ort_name = PROVIDERS[key.lower()]
    elif key.endswith("ExecutionProvider"):
        ort_name = key
    else:
        raise OptionError(f"Unknown ONNX Runtime provider {provider!r}. Choose one of: "
                               f"{', '.join(PROVIDERS)} (or a full name such as 'CUDAExecutionProvider').")
    if ort_name not in available:
        package = PROVIDER_PACKAGES.get(ort_name, "an onnxruntime build that includes it")
        raise ProviderUnavailableError(
            f"ONNX Runtime provider {key!r} ({ort_name}) is not available in this installation, which has: "
            f"{', '.join(available)}. It comes with {package}. Not falling back to another provider; "
            f"pick one of the available ones (e.g. --provider cpu).")
    return ort_name


def _provider_list(ort_name: str, available: list[str], provider_options: dict[str, Any] | None) -> list:
    first = (ort_name, dict(provider_options)) if provider_options else ort_name
    chain: list = [first]
    if ort_name == "TensorrtExecutionProvider" and "CUDAExecutionProvider" in available:
        chain.append("CUDAExecutionProvider")  # ONNX Runtime's recommended order for TensorRT
    if ort_name != "CPUExecutionProvider":
        chain.append("CPUExecutionProvider")  # per-node placement of ops the accelerator lacks
    return chain


class OrtSession:
    """One ``onnxruntime.InferenceSession`` on one artifact."""

    def __init__(self, manifest: Any, artifact_dir: Path, *, provider: str | None = None,
                 threads: int | None = None, graph_optimization: str = "all",
                 profile: str | Path | None = None, provider_options: dict[str, Any] | None = None,
                 pieces: int | None = None) -> None:
        ort = _import_ort()
        self.manifest = manifest
        self.model_path = Path(artifact_dir) / manifest.model_file
        for spec in (*manifest.inputs, *manifest.outputs):
            if spec.layout not in ("NCHW", ""):
                raise ArtifactError(f"{manifest.model}: tensor '{spec.name}' has layout {spec.layout!r}; "
                                    f"the ONNX Runtime backend runs NCHW models only. Re-export the artifact.")
        threads = positive_int_option("threads", threads, "ONNX Runtime's default")
        if graph_optimization not in GRAPH_OPTIMIZATION:
            raise OptionError(f"Unknown graph_optimization {graph_optimization!r}. Choose one of: "
                                   f"{', '.join(GRAPH_OPTIMIZATION)}.")
        available = list(ort.get_available_providers())
        ort_name = resolve_provider(provider, available)
        if not self.model_path.is_file():
            raise ArtifactError(f"{artifact_dir} is missing {manifest.model_file}; copy the whole artifact folder.")

        pieces = positive_int_option("pieces", pieces, "one session")
        if pieces and pieces > 1 and (ort_name != "CPUExecutionProvider" or profile is not None):
            raise OptionError("pieces (running the graph as several sessions, one at a time, to fit memory) works "
                              "with the CPU provider and without profiling only; drop --pieces or those options.")

        def make_options():
            o = ort.SessionOptions()
            o.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[graph_optimization])
            if threads is not None:
                o.intra_op_num_threads = threads
            return o

        opts = make_options()
        self.profile_prefix = None
        if profile is not None:
            prefix = Path(profile)
            if prefix.is_dir():
                prefix = prefix / "ort_profile"
            prefix.parent.mkdir(parents=True, exist_ok=True)
            opts.enable_profiling = True
            opts.profile_file_prefix = str(prefix)
            self.profile_prefix = str(prefix)
        self.profile_file: str | None = None
        self.pieces: list | None = None
        if not pieces and ort_name == "CPUExecutionProvider":
            check_fits(self.model_path, graph_optimization)
        try:
            if pieces and pieces > 1:
                self._sess = _open_pieces(self.model_path, pieces, graph_optimization, make_options,
                                          [o.name for o in manifest.outputs])
                self.pieces = self._sess.pieces
            else:
                self._sess = ort.InferenceSession(str(self.model_path), sess_options=opts,
                                                  providers=_provider_list(ort_name, available, provider_options))
        except SapiensEdgeError:
            raise
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ArtifactError(
                f"ONNX Runtime {ort.__version__} could not open {self.model_path} with {ort_name}: {exc}. "
                f"If the file is damaged, re-export the artifact; if the provider failed, try --provider cpu."
            ) from exc
        used = list(self._sess.get_providers())
        if ort_name not in used:
            raise PlatformUnavailableError(
                f"ONNX Runtime listed {ort_name} as available but the session runs on {', '.join(used)} only: "
                f"the provider failed to initialise (missing CUDA/cuDNN/TensorRT libraries or driver?). "
                f"Not falling back silently; fix the installation or pass --provider cpu.")
        self._check_io()
        self.requested = ort_name
        self.threads = threads
        self.graph_optimization = graph_optimization
        self.version = ort.__version__
        self._output_names = [t.name for t in manifest.outputs]
        self._closed = False

    def _check_io(self) -> None:
        m = self.manifest
        graph_in = {a.name: a.type for a in self._sess.get_inputs()}
        graph_out = {a.name: a.type for a in self._sess.get_outputs()}
        for kind, specs, graph in (("input", m.inputs, graph_in), ("output", m.outputs, graph_out)):
            for spec in specs:
                if spec.name not in graph:
                    raise ArtifactError(
                        f"{self.model_path.name} has no {kind} named '{spec.name}' (it has: {', '.join(graph)}); "
                        f"the manifest does not describe this model. Re-export the artifact.")
                dtype = _ORT_TYPES.get(graph[spec.name])
                if dtype is not None and dtype != spec.dtype:
                    raise ArtifactError(
                        f"{self.model_path.name}: {kind} '{spec.name}' is {dtype} but the manifest says "
                        f"{spec.dtype}. Re-export the artifact.")
        extra = sorted(set(graph_in) - {s.name for s in m.inputs})
        if extra:
            raise ArtifactError(f"{self.model_path.name} needs inputs the manifest does not list: "
                                f"{', '.join(extra)}. Re-export the artifact.")

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._closed:
            raise SapiensEdgeError("This ONNX Runtime session is closed; load the artifact again.")
        try:
            outs = self._sess.run(self._output_names, inputs)
        except Exception as exc:
            shapes = ", ".join(f"{k}: {tuple(v.shape)} {v.dtype}" for k, v in inputs.items())
            raise SapiensEdgeError(f"ONNX Runtime failed to run {self.model_path.name} on ({shapes}): {exc}") from exc
        return [np.asarray(o) for o in outs]

    def describe(self) -> dict[str, Any]:
        providers = list(self._sess.get_providers())
        threads = f"{self.threads} thread(s)" if self.threads else "default threads"
        return {
            "backend": NAME,
            "version": self.version,
            "requested_provider": self.requested,
            "providers": providers,
            "threads": self.threads,  # None = ONNX Runtime's default (one per physical core)
            "graph_optimization": self.graph_optimization,
            "profile": self.profile_file or self.profile_prefix,
            "pieces": len(self.pieces) if self.pieces else None,
            "summary": f"onnxruntime {self.version} ({self.requested}, {threads}, "
                       f"graph optimization {self.graph_optimization}"
                       + (f", in {len(self.pieces)} pieces one session at a time" if self.pieces else "") + ")",
        }

    def end_profiling(self) -> str | None:
        """Stop profiling and return the JSON trace file ONNX Runtime wrote (None if not profiling)."""
        if self.profile_prefix is not None and self.profile_file is None and not self._closed:
            self.profile_file = self._sess.end_profiling()
        return self.profile_file

    def close(self) -> None:
        if not self._closed:
            self.end_profiling()
            getattr(self._sess, "close", lambda: None)()
            self._closed = True
            self._sess = _ClosedSession(self._sess.get_providers())


def check_fits(model_path: Path, graph_optimization: str) -> None:
    """Refuse, before ONNX Runtime starts, a CPU session that would not fit in the memory available (a bare
    "Killed" otherwise): InsufficientMemoryError with its estimate and how many pieces would fit. Artifacts
    whose files are small next to the memory available are not planned (`worth_planning`)."""
    from sapiens_edge.errors import InsufficientMemoryError
    from sapiens_edge.memory import SKIP_ENV, available_bytes

    from .onnx_plan import load_graph, pieces_to_fit, whole_estimate, worth_planning

    available = available_bytes()
    if os.environ.get(SKIP_ENV, "") not in ("", "0") or available is None or not worth_planning(model_path, available):
        return

    graph = load_graph(model_path, optimised=graph_optimization != "disable")
    need = whole_estimate(graph)
    if need <= available:
        return
    n = pieces_to_fit(graph, available)  # raises when not even pieces fit
    raise InsufficientMemoryError(
        f"running {model_path.parent.name} in ONNX Runtime needs about {need / 2**30:.1f} GiB (its weights and "
        f"activations in one session) and {available / 2**30:.1f} GiB is available. Run it in pieces, one session "
        f"at a time: --pieces {n} (pieces={n}); `validate` does this itself. Or close other programs "
        f"(set {SKIP_ENV}=1 to try anyway).", phase="opening the ONNX Runtime session", needed=need,
        available=available)


def _open_pieces(model_path: Path, pieces: int, graph_optimization: str, make_options, output_names: list[str]):
    import tempfile

    from sapiens_edge.scratch import make_scratch_dir

    from .onnx_pieces import PiecewiseSession
    from .onnx_plan import GraphPlan, has_inline_weights, load_graph, plan_count, save_external

    optimised = graph_optimization != "disable"
    graph = load_graph(model_path, optimised)
    scratch = None
    if has_inline_weights(graph):  # else every piece's model would carry all the weights
        scratch = make_scratch_dir(tempfile.gettempdir(), "sapiens-pieces")
        try:
            model_path = save_external(graph.model, scratch / model_path.name)
            graph = GraphPlan(graph.model, optimised=optimised)  # its weights now point into the scratch copy
        except BaseException:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
            raise
    return PiecewiseSession(model_path, plan_count(graph, pieces), graph, make_options, ["CPUExecutionProvider"],
                            output_names, scratch=scratch)


class _ClosedSession:
    """Keeps describe() working after close() while releasing the ONNX Runtime session."""

    def __init__(self, providers: list[str]) -> None:
        self._providers = list(providers)

    def get_providers(self) -> list[str]:
        return self._providers


def open(manifest: Any, artifact_dir: str | Path, **options: Any) -> OrtSession:
    """Open ``manifest.model_file`` in ONNX Runtime. Options: provider ('cpu' default, 'cuda',
    'tensorrt', 'coreml'), threads (intra-op; None = ORT default), graph_optimization ('disable',
    'basic', 'extended', 'all' = default), profile (path prefix or folder for ORT's JSON trace),
    provider_options (dict passed to the provider)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise OptionError(f"Unknown option(s) for the onnxruntime backend: {', '.join(unknown)}. "
                               f"It accepts: {', '.join(OPTIONS)}.")
    options = {k: v for k, v in options.items() if v is not None}
    return OrtSession(manifest, Path(artifact_dir), **options)
