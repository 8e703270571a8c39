#if canImport(ExecuTorch)
import ExecuTorch
import Foundation
import SapiensEdgeKit

/// The ExecuTorch backend (runtime/backends/executorch_backend.py's counterpart; the Android app's
/// ExecuTorch backend): runs a `.pte` (executorch-xnnpack-* on the CPU, executorch-coreml-fp16 through the
/// Core ML delegate) with ExecuTorch's Swift API (`Module`, `Tensor<Float>`, `Value`). The program's method is
/// loaded and run once at start-up (the Core ML delegate compiles for the Neural Engine on first use).
/// Needs the app (or SAPIENS_EDGE_EXECUTORCH=1 for this package) to link ExecuTorch's SwiftPM products.
public final class ExecuTorchBackend: Backend {
    public let name = "executorch"
    private let module: Module
    private let manifest: Manifest

    public init(_ modelUrl: URL, _ manifest: Manifest, warmUp: Bool = true) throws {
        self.manifest = manifest
        module = Module(filePath: modelUrl.path)
        do {
            try module.load("forward")
        } catch {
            throw ArtifactError("ExecuTorch could not load \(modelUrl.lastPathComponent) (\(error.localizedDescription)): "
                + "the app lacks the program's backend or kernels (link backend_xnnpack / backend_coreml and "
                + "kernels_optimized with -all_load), or the .pte was exported by another ExecuTorch release than the "
                + "app's (see the manifest's tool_versions).")
        }
        if warmUp {
            let shape = manifest.inputSpec.shape.map { max($0, 1) }
            let zeros = [Float](repeating: 0, count: shape.reduce(1, *))
            _ = try zeros.withUnsafeBufferPointer { try run($0, shape) }
        }
    }

    public func run(_ input: UnsafeBufferPointer<Float>, _ shape: [Int]) throws -> [SapiensEdgeKit.Tensor] {
        let x = ExecuTorch.Tensor<Float>(Array(input), shape: shape)
        let values: [Value] = try module.forward([x])
        if values.count != manifest.outputs.count {
            throw OutputShapeError("The .pte returned \(values.count) output(s); its manifest lists "
                + "\(manifest.outputs.map { $0.name }). Re-export the artifact.")
        }
        return try values.enumerated().map { pair -> SapiensEdgeKit.Tensor in
            try ExecuTorchBackend.floats(pair.element, manifest.outputs[pair.offset].name)
        }
    }

    /// Float, int32 and int64 output tensors (decoded class ids) as float32 arrays with their shapes.
    private static func floats(_ v: Value, _ name: String) throws -> SapiensEdgeKit.Tensor {
        if let t: ExecuTorch.Tensor<Float> = v.tensor() { return SapiensEdgeKit.Tensor(t.shape, t.scalars()) }
        if let t: ExecuTorch.Tensor<Int32> = v.tensor() { return SapiensEdgeKit.Tensor(t.shape, t.scalars().map { Float($0) }) }
        if let t: ExecuTorch.Tensor<Int64> = v.tensor() { return SapiensEdgeKit.Tensor(t.shape, t.scalars().map { Float($0) }) }
        throw OutputShapeError("Output '\(name)' is not a float32, int32 or int64 tensor; re-export the artifact.")
    }

    public func describe() -> String { "ExecuTorch (\(manifest.recipe))" }
}

/// Open an ExecuTorch artifact folder: read and verify the manifest, check the task, load the program, warm up.
public func loadExecuTorch(_ folder: URL, task: String? = nil, verify: Bool = true) throws -> Predictor {
    // The engine first: another target's folder (a .onnx, a .pte) fails on its files otherwise.
    let manifest = try readManifest(folder, task: task, verify: false)
    if manifest.target != "executorch" {
        throw WrongTaskError("\(folder.path) is a '\(manifest.target)' artifact (\(manifest.recipe)); ExecuTorch runs "
            + "executorch-* recipes. Use the Core ML backend for coreml-* artifacts.")
    }
    if verify { _ = try readManifest(folder, task: task, verify: true) }
    let backend = try ExecuTorchBackend(folder.appendingPathComponent(manifest.modelFile), manifest)
    return try Predictor(manifest, backend)
}
#endif
