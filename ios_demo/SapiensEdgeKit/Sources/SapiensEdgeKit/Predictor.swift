import Foundation

/// An opened artifact: frame -> task result with the Python runtime's pre/post-processing
/// (runtime/predictor.py's Predictor; Predictor.kt). The backend is whatever engine the app picked.
/// One predict() at a time per Predictor (its input buffers are reused); run it off the main thread.
public final class Predictor {
    public let manifest: Manifest
    public let backend: Backend
    public let processor: TaskProcessor
    private let flipBuffer = InputBuffer()
    private let itemBuffer = InputBuffer()

    /// Last call's split: milliseconds in pre-processing, the engine and post-processing.
    public private(set) var lastTimings: [Double] = [0, 0, 0]

    public init(_ manifest: Manifest, _ backend: Backend) throws {
        self.manifest = manifest
        self.backend = backend
        processor = try processorFor(manifest)
    }

    /// Run the model on one frame. `boxes`: pose only, x1, y1, x2, y2 per person (nil: the whole frame);
    /// `flipTest`: pose with raw heatmaps only (nil: the task's default, on for raw pose as upstream).
    public func predict(_ image: RgbImage, _ boxes: [Float]? = nil, flipTest: Bool? = nil) throws -> TaskResult {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let prepared = try processor.prepare(image, boxes)
        let t1 = DispatchTime.now().uptimeNanoseconds
        let outputs = try run(prepared)
        let flip = flipTest ?? processor.usesFlipTest
        if flip && !processor.usesFlipTest {
            throw OptionError("Flip test applies to pose artifacts with raw heatmaps only, not to this \(manifest.task) "
                + "artifact\(manifest.decoded ? " (decoded outputs)" : "").")
        }
        var flipped: [Tensor]? = nil
        if flip, let pose = processor as? PoseProcessor { flipped = try run(pose.flipInput(prepared, flipBuffer)) }
        let t2 = DispatchTime.now().uptimeNanoseconds
        let result = try processor.finish(outputs, prepared, flipped)
        let t3 = DispatchTime.now().uptimeNanoseconds
        lastTimings = [Double(t1 - t0) / 1e6, Double(t2 - t1) / 1e6, Double(t3 - t2) / 1e6]
        return result
    }

    /// Raw outputs for a prepared batch, NCHW, checked against the manifest; a batch-1 model runs item by item.
    public func run(_ prepared: Prepared) throws -> [Tensor] {
        let n = prepared.batch
        let fixedOne = manifest.inputSpec.shape.first == 1
        var parts: [[Tensor]] = []
        if fixedOne && n > 1 {
            let per = prepared.input.count / n
            var shape = prepared.shape
            shape[0] = 1
            for i in 0..<n {
                let one = itemBuffer.acquire(per)
                for j in 0..<per { one[j] = prepared.input[i * per + j] }
                parts.append(try checked(try backend.run(UnsafeBufferPointer(one), shape), 1))
            }
        } else {
            parts.append(try checked(try backend.run(UnsafeBufferPointer(prepared.input), prepared.shape), n))
        }
        if parts.count == 1 { return parts[0] }
        return parts[0].indices.map { j -> Tensor in
            var s = parts[0][j].shape
            s[0] = n
            return Tensor(s, parts.flatMap { $0[j].data })
        }
    }

    /// Outputs in the manifest's order and shapes (fixed dims must match), converted to NCHW.
    private func checked(_ outputs: [Tensor], _ n: Int) throws -> [Tensor] {
        if outputs.count != manifest.outputs.count {
            throw OutputShapeError("\(manifest.model) returned \(outputs.count) output(s); its manifest lists "
                + "\(manifest.outputs.count) (\(manifest.outputs.map { $0.name })). The model file and manifest disagree: re-export.")
        }
        var out: [Tensor] = []
        for (i, t) in outputs.enumerated() {
            let spec = manifest.outputs[i]
            let ok = t.shape.count == spec.shape.count && t.shape[0] == n
                && spec.shape.indices.dropFirst().allSatisfy { d in spec.shape[d] <= 0 || spec.shape[d] == t.shape[d] }
            if !ok {
                throw OutputShapeError("\(manifest.model)'s output '\(spec.name)' has shape \(t.shape), but its "
                    + "manifest says \(spec.shape) (batch \(n)). The model file does not belong to this manifest: re-export the artifact.")
            }
            out.append(spec.layout == "NHWC" && t.shape.count == 4 ? nhwcToNchw(t) : t)
        }
        return out
    }

    public func close() { backend.close() }
}

/// (N, H, W, C) -> (N, C, H, W).
public func nhwcToNchw(_ t: Tensor) -> Tensor {
    let (n, h, w, c) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
    var out = [Float](repeating: 0, count: t.data.count)
    for b in 0..<n {
        for y in 0..<h {
            for x in 0..<w {
                for k in 0..<c { out[((b * c + k) * h + y) * w + x] = t.data[((b * h + y) * w + x) * c + k] }
            }
        }
    }
    return Tensor([n, c, h, w], out)
}
