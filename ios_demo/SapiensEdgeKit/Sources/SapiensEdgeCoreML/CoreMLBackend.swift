#if canImport(CoreML)
import CoreML
import CoreVideo
import Foundation
import SapiensEdgeKit

/// Core ML compute units the app may ask for (runtime/backends/coreml_backend.py's COMPUTE_UNITS); none is
/// chosen silently. cpuAndNeuralEngine is where the fp16 / palettized recipes are fastest.
public enum ComputeUnits: String, CaseIterable {
    case all, cpu, cpuAndGpu = "cpu_and_gpu", cpuAndNeuralEngine = "cpu_and_ne"

    var mlComputeUnits: MLComputeUnits {
        switch self {
        case .all: return .all
        case .cpu: return .cpuOnly
        case .cpuAndGpu: return .cpuAndGPU
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        }
    }
}

/// The Core ML backend (runtime/backends/coreml_backend.py's counterpart): an `.mlpackage` compiled once
/// (cached next to the artifact as `model.mlmodelc`), loaded with the chosen compute units and warmed up
/// with one prediction, because the first prediction on the Neural Engine compiles for seconds.
/// Image-input models (the default export) get the normalized tensor turned back into 8-bit RGB pixels
/// (x * std + mean, rounded), as the Python backend does; tensor-input models get an MLMultiArray.
public final class CoreMLBackend: Backend {
    public let name = "coreml"
    public let computeUnits: ComputeUnits
    public let model: MLModel
    private let manifest: Manifest
    /// Seconds the first load (compile + warm-up) took: shown by the app.
    public private(set) var loadSeconds: Double = 0

    public init(_ modelUrl: URL, _ manifest: Manifest, computeUnits: ComputeUnits = .all, warmUp: Bool = true) throws {
        self.manifest = manifest
        self.computeUnits = computeUnits
        let start = Date()
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits.mlComputeUnits
        do {
            model = try MLModel(contentsOf: try CoreMLBackend.compiled(modelUrl, CoreMLBackend.cacheKey(manifest)),
                                configuration: config)
        } catch let e as SapiensEdgeException {
            throw e
        } catch {
            let target = manifest.exportOptions["deployment_target"]?.string ?? "?"
            throw ArtifactError("Core ML could not load \(modelUrl.path): \(error.localizedDescription). The package is "
                + "damaged or needs a newer OS (deployment target \(target)): pick a recipe for this device.")
        }
        if warmUp {
            let warm = InputBuffer()
            let shape = manifest.inputSpec.shape.map { max($0, 1) }
            try withExtendedLifetime(warm) {
                _ = try run(UnsafeBufferPointer(warm.acquire(shape.reduce(1, *))), shape)
            }
        }
        loadSeconds = Date().timeIntervalSince(start)
    }

    /// The model package's identity: the sha256s the manifest lists for the files inside it.
    static func cacheKey(_ manifest: Manifest) -> String {
        let prefix = manifest.modelFile + "/"
        let digests = manifest.files.keys.sorted().filter { $0.hasPrefix(prefix) || $0 == manifest.modelFile }
            .map { manifest.files[$0]! }
        return String(sha256Hex(Array(digests.joined().utf8)).prefix(16))
    }

    /// `model.mlpackage` -> `model-KEY.mlmodelc` beside it, compiled on first use (Core ML runs compiled models
    /// only); KEY changes with the package's content, so a re-copied model is compiled again.
    static func compiled(_ url: URL, _ key: String) throws -> URL {
        if url.pathExtension == "mlmodelc" { return url }
        let stem = url.deletingPathExtension().lastPathComponent
        let target = url.deletingLastPathComponent().appendingPathComponent("\(stem)-\(key).mlmodelc")
        let fm = FileManager.default
        if fm.fileExists(atPath: target.path) { return target }
        let tmp = try MLModel.compileModel(at: url)
        do {
            try fm.moveItem(at: tmp, to: target)
            return target
        } catch {
            return tmp // a read-only folder (an app bundle): use the temporary copy
        }
    }

    public func run(_ input: UnsafeBufferPointer<Float>, _ shape: [Int]) throws -> [Tensor] {
        let spec = manifest.inputSpec
        let value: MLFeatureValue
        if manifest.imageInput {
            value = MLFeatureValue(pixelBuffer: try pixelBuffer(input, shape))
        } else {
            let array = MLShapedArray<Float>(scalars: Array(input), shape: shape)
            value = MLFeatureValue(multiArray: MLMultiArray(array))
        }
        let features = try MLDictionaryFeatureProvider(dictionary: [spec.name: value])
        let out = try model.prediction(from: features)
        return try manifest.outputs.map { o -> Tensor in
            guard let array = out.featureValue(for: o.name)?.multiArrayValue else {
                throw OutputShapeError("The Core ML model has no array output '\(o.name)' its manifest lists; re-export the artifact.")
            }
            // MLShapedArray(converting:) follows the array's strides (the Neural Engine pads rows) and converts
            // float16 / int32 outputs to float.
            let shaped = MLShapedArray<Float>(converting: array)
            return Tensor(shaped.shape, shaped.scalars)
        }
    }

    /// A (1, 3, H, W) normalized tensor -> a 32BGRA pixel buffer of rint(x * std + mean), clamped.
    private func pixelBuffer(_ x: UnsafeBufferPointer<Float>, _ shape: [Int]) throws -> CVPixelBuffer {
        let (h, w) = (shape[2], shape[3])
        var pb: CVPixelBuffer?
        let attrs = [kCVPixelBufferCGImageCompatibilityKey as String: true,
                     kCVPixelBufferCGBitmapContextCompatibilityKey as String: true] as CFDictionary
        guard CVPixelBufferCreate(kCFAllocatorDefault, w, h, kCVPixelFormatType_32BGRA, attrs, &pb) == kCVReturnSuccess,
              let buffer = pb else {
            throw OptionError("Could not allocate a \(w)x\(h) pixel buffer for the Core ML image input.")
        }
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        let base = CVPixelBufferGetBaseAddress(buffer)!.assumingMemoryBound(to: UInt8.self)
        let stride = CVPixelBufferGetBytesPerRow(buffer)
        let hw = h * w
        let mean = manifest.meanRgb, std = manifest.stdRgb
        func px(_ c: Int, _ i: Int) -> UInt8 {
            let v = (x[c * hw + i] * std[c] + mean[c]).rounded(.toNearestOrEven)
            return UInt8(min(max(v, 0), 255))
        }
        for y in 0..<h {
            let row = base + y * stride
            for xx in 0..<w {
                let i = y * w + xx
                row[4 * xx] = px(2, i)
                row[4 * xx + 1] = px(1, i)
                row[4 * xx + 2] = px(0, i)
                row[4 * xx + 3] = 255
            }
        }
        return buffer
    }

    public func describe() -> String { "Core ML (\(computeUnits.rawValue), \(manifest.recipe))" }
}

/// Open a Core ML artifact folder: read and verify the manifest (digest, every file's sha256), check it is a
/// `task` artifact when given, compile and load the model with `computeUnits`, warm it up.
public func loadCoreML(_ folder: URL, task: String? = nil, computeUnits: ComputeUnits = .all,
                       verify: Bool = true) throws -> Predictor {
    // The engine first: another target's folder (a .onnx, a .pte) fails on its files otherwise.
    let manifest = try readManifest(folder, task: task, verify: false)
    if manifest.target != "coreml" {
        throw WrongTaskError("\(folder.path) is a '\(manifest.target)' artifact (\(manifest.recipe)); Core ML runs "
            + "coreml-* recipes. Use the ExecuTorch backend for executorch-* artifacts, or export with a coreml recipe.")
    }
    if verify { _ = try readManifest(folder, task: task, verify: true) }
    let backend = try CoreMLBackend(folder.appendingPathComponent(manifest.modelFile), manifest, computeUnits: computeUnits)
    return try Predictor(manifest, backend)
}
#endif
