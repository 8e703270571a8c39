import Foundation

/*
 * runtime/tasks.py in Swift (Tasks.kt): one prepare/finish pair per task, shared by every backend. A backend only
 * turns the prepared input buffer into raw (or decoded) output tensors.
 */

/// What finish() needs beyond the outputs: the original size, and pose boxes (centres/scales) or dense padding.
public class Context {
    public let imageH: Int, imageW: Int, inputH: Int, inputW: Int

    init(_ imageH: Int, _ imageW: Int, _ inputH: Int, _ inputW: Int) {
        self.imageH = imageH; self.imageW = imageW; self.inputH = inputH; self.inputW = inputW
    }
}

public final class PoseContext: Context {
    public let boxes: [Float]
    public let centerScales: [Float]
    public var persons: Int { boxes.count / 4 }

    public init(_ imageH: Int, _ imageW: Int, _ inputH: Int, _ inputW: Int, _ boxes: [Float], _ centerScales: [Float]) {
        self.boxes = boxes
        self.centerScales = centerScales
        super.init(imageH, imageW, inputH, inputW)
    }
}

public final class DenseContext: Context {
    public let pad: [Int]

    public init(_ imageH: Int, _ imageW: Int, _ inputH: Int, _ inputW: Int, _ pad: [Int] = [0, 0, 0, 0]) {
        self.pad = pad
        super.init(imageH, imageW, inputH, inputW)
    }
}

/// The model input (a view of a reused InputBuffer, `shape` in the manifest's layout) and its context. Holding
/// the Prepared keeps its buffer alive; the buffer's next acquire() (the next prepare()) overwrites it.
public struct Prepared {
    public let input: UnsafeMutableBufferPointer<Float>
    public let shape: [Int]
    public let layout: Layout
    public let context: Context
    public let owner: InputBuffer
    public var batch: Int { shape[0] }

    public init(_ input: UnsafeMutableBufferPointer<Float>, _ shape: [Int], _ layout: Layout, _ context: Context,
                owner: InputBuffer) {
        self.input = input
        self.shape = shape
        self.layout = layout
        self.context = context
        self.owner = owner
    }
}

/// The kit's task processors, configured from the manifest (normalization, layout, metadata, decoded or raw).
/// Subclasses override `task`, `prepare` and `finish` (Kotlin's abstract members).
public class TaskProcessor {
    public let manifest: Manifest
    public let inputH: Int
    public let inputW: Int
    public let layout: Layout
    let buffer = InputBuffer()

    init(_ manifest: Manifest) {
        self.manifest = manifest
        inputH = manifest.inputHw.0
        inputW = manifest.inputHw.1
        layout = manifest.inputSpec.layout == "NHWC" ? .NHWC : .NCHW
    }

    public var task: String { fatalError("TaskProcessor is abstract") }
    public var usesFlipTest: Bool { false }

    public func prepare(_ image: RgbImage, _ boxes: [Float]? = nil) throws -> Prepared {
        fatalError("TaskProcessor is abstract")
    }

    public func finish(_ outputs: [Tensor], _ prepared: Prepared, _ flipped: [Tensor]? = nil) throws -> TaskResult {
        fatalError("TaskProcessor is abstract")
    }

    func shape(_ n: Int) -> [Int] { layout == .NCHW ? [n, 3, inputH, inputW] : [n, inputH, inputW, 3] }

    func noBoxes(_ boxes: [Float]?) throws {
        if let b = boxes, !b.isEmpty { throw InputShapeError("Person boxes only apply to the pose task, not to '\(task)'.") }
    }

    /// Output `name` (decoded artifacts) or index `i` (raw), checked for rank and batch like tasks.py _output.
    func output(_ outputs: [Tensor], _ i: Int, _ rank: Int, _ n: Int, _ name: String? = nil) throws -> Tensor {
        let at = name.map { nm in manifest.outputs.firstIndex(where: { $0.name == nm }) ?? -1 } ?? i
        if at < 0 || at >= outputs.count {
            throw OutputShapeError("The \(task) model (\(manifest.model)) returned \(outputs.count) output(s) without "
                + "'\(name ?? "#\(i)")'; its manifest lists \(manifest.outputs.map { $0.name }). Re-export the artifact.")
        }
        let t = outputs[at]
        if t.shape.count != rank || t.shape[0] != n {
            let label = at < manifest.outputs.count ? manifest.outputs[at].name : "\(at)"
            throw OutputShapeError("The \(task) model's output '\(label)' has shape \(t.shape); expected \(rank) "
                + "dimensions with batch \(n). The model file does not match its manifest: re-export the artifact.")
        }
        return t
    }
}

public final class PoseProcessor: TaskProcessor {
    public let flipIndices: [Int]
    private let stride: Int

    public init(manifest: Manifest) throws {
        flipIndices = try intList(manifest.taskMetadata, "flip_indices")
        stride = manifest.taskMetadata["heatmap_stride"]?.double.map(truncInt) ?? 4
        super.init(manifest)
    }

    override public var task: String { "pose" }
    override public var usesFlipTest: Bool { !manifest.decoded } // a decoded graph returns keypoints: nothing to merge

    override public func prepare(_ image: RgbImage, _ boxes: [Float]? = nil) throws -> Prepared {
        let u8 = try toU8(image)
        let b = try checkBoxes(boxes, u8.height, u8.width)
        let n = b.count / 4
        let dst = buffer.acquire(n * 3 * inputH * inputW)
        let cs = preprocessPose(u8, b, inputH, inputW, manifest.meanRgb, manifest.stdRgb, dst, layout)
        return Prepared(dst, shape(n), layout, PoseContext(u8.height, u8.width, inputH, inputW, b, cs), owner: buffer)
    }

    override public func finish(_ outputs: [Tensor], _ prepared: Prepared, _ flipped: [Tensor]? = nil) throws -> TaskResult {
        guard let ctx = prepared.context as? PoseContext else { preconditionFailure("not a pose Prepared") }
        let n = ctx.persons
        if manifest.decoded { return try finishDecoded(outputs, ctx) }
        let hm = try output(outputs, 0, 4, n)
        let (k, h, w) = (hm.shape[1], hm.shape[2], hm.shape[3])
        var data = hm.data
        if let flipped = flipped {
            let f = try output(flipped, 0, 4, n)
            if k != flipIndices.count || f.shape != hm.shape {
                throw OutputShapeError("Flip test needs two heatmap batches of \(flipIndices.count) channels; got "
                    + "\(hm.shape) and \(f.shape).")
            }
            let per = k * h * w
            for p in 0..<n {
                let merged = mergeFlip(Array(hm.data[(p * per)..<((p + 1) * per)]), Array(f.data[(p * per)..<((p + 1) * per)]),
                                       k, h, w, flipIndices)
                data.replaceSubrange((p * per)..<((p + 1) * per), with: merged)
            }
        }
        var keypoints = [Float](repeating: 0, count: n * k * 2)
        var scores = [Float](repeating: 0, count: n * k)
        for p in 0..<n {
            let d = decodeUdpDark(data, k, h, w, p * k * h * w)
            scores.replaceSubrange((p * k)..<((p + 1) * k), with: d.scores)
            heatmapToImage(d.coords, ctx.centerScales, 4 * p, h, w, inputH, inputW, &keypoints, p * k * 2)
        }
        return PoseResult(imageH: ctx.imageH, imageW: ctx.imageW, inputH: inputH, inputW: inputW, persons: n,
                          numKeypoints: k, keypoints: keypoints, scores: scores, boxes: ctx.boxes, flipTest: flipped != nil)
    }

    /// Decoded contract: keypoints [N, K, 2] in heatmap pixels (refined in the graph) + scores [N, K].
    private func finishDecoded(_ outputs: [Tensor], _ ctx: PoseContext) throws -> PoseResult {
        let n = ctx.persons
        let kp = try output(outputs, 0, 3, n, "keypoints")
        let sc = try output(outputs, 1, 2, n, "scores")
        let k = kp.shape[1]
        if kp.shape[2] != 2 || sc.shape[1] != k {
            throw OutputShapeError("Decoded pose outputs must be keypoints [N, K, 2] and scores [N, K]; got "
                + "\(kp.shape) and \(sc.shape). Re-export the artifact.")
        }
        var keypoints = [Float](repeating: 0, count: n * k * 2)
        let hmH = inputH / stride
        let hmW = inputW / stride
        for p in 0..<n {
            heatmapToImage(Array(kp.data[(p * k * 2)..<((p + 1) * k * 2)]), ctx.centerScales, 4 * p, hmH, hmW, inputH, inputW,
                           &keypoints, p * k * 2)
        }
        return PoseResult(imageH: ctx.imageH, imageW: ctx.imageW, inputH: inputH, inputW: inputW, persons: n,
                          numKeypoints: k, keypoints: keypoints, scores: sc.data, boxes: ctx.boxes, flipTest: false)
    }

    /// The input mirrored along its width (the flip test's second run).
    public func flipInput(_ prepared: Prepared, _ into: InputBuffer) -> Prepared {
        let n = prepared.batch
        let dst = into.acquire(n * 3 * inputH * inputW)
        let src = prepared.input
        let rows = layout == .NCHW ? n * 3 * inputH : n * inputH
        let px = layout == .NCHW ? 1 : 3
        for r in 0..<rows {
            let base = r * inputW * px
            for x in 0..<inputW {
                for c in 0..<px { dst[base + x * px + c] = src[base + (inputW - 1 - x) * px + c] }
            }
        }
        return Prepared(dst, prepared.shape, layout, prepared.context, owner: into)
    }
}

public final class SegProcessor: TaskProcessor {
    /// Class colours for overlays (task_metadata.palette_rgb; empty when absent).
    public let palette: [[Int]]
    private let metaClasses: Int?

    public init(manifest: Manifest) throws {
        palette = try metadataRows(manifest, "palette_rgb")
        metaClasses = manifest.taskMetadata["class_names"]?.items?.count ?? manifest.taskMetadata["palette_rgb"]?.items?.count
        super.init(manifest)
    }

    override public var task: String { "seg" }

    override public func prepare(_ image: RgbImage, _ boxes: [Float]? = nil) throws -> Prepared {
        try noBoxes(boxes)
        let u8 = try toU8(image)
        let dst = buffer.acquire(3 * inputH * inputW)
        preprocessSeg(u8, inputH, inputW, manifest.meanRgb, manifest.stdRgb, dst, layout)
        return Prepared(dst, shape(1), layout, DenseContext(u8.height, u8.width, inputH, inputW), owner: buffer)
    }

    override public func finish(_ outputs: [Tensor], _ prepared: Prepared, _ flipped: [Tensor]? = nil) throws -> TaskResult {
        let ctx = prepared.context
        let labels: [Int]
        let classes: Int
        if manifest.decoded {
            let t = try output(outputs, 0, 3, 1, "labels")
            let ids = t.data.map { truncInt(Double($0)) }
            labels = nearestLabels(ids, t.shape[1], t.shape[2], ctx.imageH, ctx.imageW)
            classes = metaClasses ?? ((ids.max() ?? 0) + 1)
        } else {
            let t = try output(outputs, 0, 4, 1)
            labels = segLabels(t.data, t.shape[1], t.shape[2], t.shape[3], ctx.imageH, ctx.imageW)
            classes = metaClasses ?? t.shape[1]
        }
        return SegResult(imageH: ctx.imageH, imageW: ctx.imageW, inputH: inputH, inputW: inputW, labels: labels,
                         fractions: classFractions(labels, classes))
    }
}

public class DenseProcessor: TaskProcessor {
    override public func prepare(_ image: RgbImage, _ boxes: [Float]? = nil) throws -> Prepared {
        try noBoxes(boxes)
        let u8 = try toU8(image)
        let dst = buffer.acquire(3 * inputH * inputW)
        let pad = preprocessDense(u8, inputH, inputW, manifest.meanRgb, manifest.stdRgb, dst, layout)
        return Prepared(dst, shape(1), layout, DenseContext(u8.height, u8.width, inputH, inputW, pad), owner: buffer)
    }

    func chw(_ t: Tensor) throws -> Chw {
        if t.shape[1] != 3 {
            throw OutputShapeError("The \(task) model's output has shape \(t.shape); expected 3 channels. Re-export the artifact.")
        }
        return Chw(3, t.shape[2], t.shape[3], t.data)
    }
}

public final class NormalProcessor: DenseProcessor {
    override public var task: String { "normal" }

    override public func finish(_ outputs: [Tensor], _ prepared: Prepared, _ flipped: [Tensor]? = nil) throws -> TaskResult {
        guard let ctx = prepared.context as? DenseContext else { preconditionFailure("not a dense Prepared") }
        let raw = try chw(try output(outputs, 0, 4, 1, manifest.decoded ? "normals" : nil))
        // Decoded outputs are unit vectors already; raw ones are normalized here (normal.py unit_normals).
        let normals = postprocessNormal(raw, ctx.pad, ctx.imageH, ctx.imageW, unit: !manifest.decoded)
        return NormalResult(imageH: ctx.imageH, imageW: ctx.imageW, inputH: inputH, inputW: inputW, normals: normals)
    }
}

public final class PointmapProcessor: DenseProcessor {
    override public var task: String { "pointmap" }

    override public func finish(_ outputs: [Tensor], _ prepared: Prepared, _ flipped: [Tensor]? = nil) throws -> TaskResult {
        guard let ctx = prepared.context as? DenseContext else { preconditionFailure("not a dense Prepared") }
        let raw = try chw(try output(outputs, 0, 4, 1))
        let scaleT = try output(outputs, 1, 2, 1)
        if scaleT.data.count != 1 {
            throw OutputShapeError("The pointmap model's scale output has shape \(scaleT.shape); expected [1, 1].")
        }
        let scale = scaleT.data[0]
        return PointmapResult(imageH: ctx.imageH, imageW: ctx.imageW, inputH: inputH, inputW: inputW,
                              pointmap: postprocessPointmap(raw, scale, ctx.pad, ctx.imageH, ctx.imageW),
                              scale: scale, focalLength: focalLength(scale))
    }
}

/// The processor for the manifest's task (tasks.py get_processor).
public func processorFor(_ manifest: Manifest) throws -> TaskProcessor {
    switch manifest.task {
    case "pose": return try PoseProcessor(manifest: manifest)
    case "seg": return try SegProcessor(manifest: manifest)
    case "normal": return NormalProcessor(manifest)
    case "pointmap": return PointmapProcessor(manifest)
    default: throw WrongTaskError("Unknown task '\(manifest.task)'. Known tasks: \(TASKS.joined(separator: ", ")).")
    }
}

func intList(_ o: Json, _ key: String) throws -> [Int] {
    guard let items = o[key]?.items else {
        throw ManifestError("The manifest's task_metadata has no '\(key)'; re-export the artifact.")
    }
    return try items.map { item in
        guard let d = item.double else { throw ManifestError("The manifest's task_metadata '\(key)' is malformed; re-export the artifact.") }
        return truncInt(d)
    }
}

func rows(_ o: Json, _ key: String) throws -> [[Int]] {
    guard let items = o[key]?.items else {
        throw ManifestError("The manifest's task_metadata has no '\(key)'; re-export the artifact.")
    }
    return try items.map { r in
        guard let row = r.items else { throw ManifestError("The manifest's task_metadata '\(key)' is malformed; re-export the artifact.") }
        return try row.map { v in
            guard let d = v.double else { throw ManifestError("The manifest's task_metadata '\(key)' is malformed; re-export the artifact.") }
            return truncInt(d)
        }
    }
}

/// Rows of ints from task_metadata (palette_rgb, skeleton, skeleton_colors, keypoint_colors); empty when absent.
public func metadataRows(_ manifest: Manifest, _ key: String) throws -> [[Int]] {
    manifest.taskMetadata[key] == nil ? [] : try rows(manifest.taskMetadata, key)
}
