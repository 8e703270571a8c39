import CoreGraphics
import Foundation
import SapiensEdgeCoreML
import SapiensEdgeKit
#if canImport(ExecuTorch)
import SapiensEdgeExecuTorch
#endif

/// The engines this build can run an artifact with (the Android app's Backends.kt): Core ML for coreml-*,
/// ExecuTorch for executorch-* (when the app was built with SAPIENS_EDGE_EXECUTORCH=1).
func openPredictor(_ folder: URL, computeUnits: ComputeUnits) throws -> Predictor {
    let manifest = try readManifest(folder)
    switch manifest.target {
    case "coreml":
        return try loadCoreML(folder, computeUnits: computeUnits, verify: false) // verified just above
    case "executorch":
        #if canImport(ExecuTorch)
        return try loadExecuTorch(folder, verify: false)
        #else
        throw OptionError("This build has no ExecuTorch runtime: rebuild the app with SAPIENS_EDGE_EXECUTORCH=1 "
            + "(ios_demo/README.md), or export a coreml-* recipe.")
        #endif
    default:
        throw WrongTaskError("\(folder.lastPathComponent) is a '\(manifest.target)' artifact (\(manifest.recipe)); this "
            + "app runs coreml-* and executorch-* recipes. Export one of those for the iPhone.")
    }
}

/// One inference at a time on a background queue, keep-latest: a frame that arrives while the model runs
/// replaces any waiting one (a slow model drops frames, never queues them). Results go to `onResult` on main.
final class InferenceLoop: @unchecked Sendable {
    struct Output {
        let image: CGImageBox
        let stats: String
    }

    private let queue = DispatchQueue(label: "sapiens-edge.inference", qos: .userInitiated)
    private let lock = NSLock()
    private var busy = false
    private var waiting: RgbImage?
    private var predictor: Predictor?
    private var meta: OverlayMeta?
    var onResult: (Output) -> Void = { _ in }
    var onError: (String) -> Void = { _ in }

    /// Open `folder` off the main thread (Core ML compiles and warms up for seconds on first load).
    func open(_ folder: URL, computeUnits: ComputeUnits, done: @escaping (String) -> Void) {
        queue.async {
            self.predictor?.close()
            self.predictor = nil
            let text: String
            do {
                let start = Date()
                let p = try openPredictor(folder, computeUnits: computeUnits)
                self.predictor = p
                self.meta = try OverlayMeta(p.manifest)
                text = String(format: "%@ %@\n%@, loaded in %.1f s", p.manifest.model, p.manifest.recipe,
                              p.backend.describe(), Date().timeIntervalSince(start))
            } catch {
                text = error.localizedDescription
            }
            DispatchQueue.main.async { done(text) }
        }
    }

    /// Offer a frame: run now if idle, else keep it as the one to run next (replacing an older one).
    func submit(_ frame: RgbImage) {
        lock.lock()
        if busy {
            waiting = frame
            lock.unlock()
            return
        }
        busy = true
        lock.unlock()
        queue.async { self.drain(frame) }
    }

    private func drain(_ first: RgbImage) {
        var next: RgbImage? = first
        while let frame = next {
            infer(frame)
            lock.lock()
            next = waiting
            waiting = nil
            if next == nil { busy = false }
            lock.unlock()
        }
    }

    /// Runs on the queue. Pose runs on the whole frame here (the demo has no person detector).
    private func infer(_ frame: RgbImage) {
        guard let p = predictor, let meta = meta else { return }
        do {
            let result = try p.predict(frame)
            let t = p.lastTimings
            guard let image = try overlay(frame, result, meta) else { return }
            let stats = String(format: "%@\n%@\npre %.0f ms | model %.0f ms | post %.0f ms", p.manifest.recipe,
                               p.backend.describe(), t[0], t[1], t[2])
            let out = Output(image: CGImageBox(image), stats: stats)
            DispatchQueue.main.async { self.onResult(out) }
        } catch {
            let text = error.localizedDescription
            DispatchQueue.main.async { self.onError(text) }
        }
    }
}

/// A CGImage handed from the inference queue to the main thread (immutable once made).
final class CGImageBox: @unchecked Sendable {
    let image: CGImage
    init(_ image: CGImage) { self.image = image }
}
