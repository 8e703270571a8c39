import Foundation
import SapiensEdgeKit
import XCTest

/// The golden cases these tests read, each with the arrays read from it and their shapes: "in.x" / "out.y" are
/// the case's inputs / expected arrays; shape symbols: N persons (box rows), K keypoints (flip_indices), C classes
/// (palette_rgb), H x W the frame, h x w the case's input_hw, * any. The tests read nothing else (arr() checks),
/// and cases.json must hold exactly these cases. tests/ios_kit/test_swift_golden_contract.py parses this table
/// against what `python -m sapiens_edge.runtime.golden` writes today: keep one case per line.
let GOLDEN_CONTRACT: [String: [String]] = [
    "pre_pose": ["in.boxes:N,4", "out.input:N,3,h,w", "out.center_scale:N,4"],
    "pre_seg_16x32": ["out.input:1,3,h,w"],
    "pre_seg_64x80": ["out.input:1,3,h,w"],
    "pre_dense": ["out.input:1,3,h,w"],
    "raw_pose": ["in.boxes:N,4", "in.heatmaps:N,K,*,*", "out.keypoints:N,K,2", "out.scores:N,K"],
    "raw_pose_flip": ["in.boxes:N,4", "in.heatmaps:N,K,*,*", "in.flipped:N,K,*,*", "out.keypoints:N,K,2", "out.scores:N,K"],
    "raw_seg_up": ["in.logits:1,C,*,*", "out.labels:H,W"],
    "raw_seg_down": ["in.logits:1,C,*,*", "out.labels:H,W"],
    "raw_normal": ["in.normals:1,3,h,w", "out.normals:H,W,3"],
    "raw_pointmap": ["in.pointmap:1,3,h,w", "in.scale:1,1", "out.pointmap:H,W,3", "out.focal_length:1"],
    "decoded_seg": ["in.labels:1,*,*", "out.labels:H,W"],
    "decoded_pose": ["in.boxes:N,4", "in.keypoints:N,K,2", "in.scores:N,K", "out.keypoints:N,K,2", "out.scores:N,K"],
    "decoded_normal": ["in.normals:1,3,h,w", "out.normals:H,W,3"],
    "overlay_seg": ["in.labels:H,W", "out.rgb:H,W,3"],
    "overlay_normal": ["in.normals:H,W,3", "out.rgb:H,W,3"],
]

/// The kit against golden vectors written by `python -m sapiens_edge.runtime.golden` in the same run (GoldenTest.kt).
/// Tolerances: input tensors exact but for uint8 rounding ties (<= 1 level, < 1 % of values);
/// keypoints <= 1e-3 px; label maps identical; normals and pointmaps 1e-5.
final class GoldenTests: XCTestCase {
    private var dir = URL(fileURLWithPath: "/")
    private var doc = Json.null
    private var frame = RgbImage(0, 0, [])
    private var meta: [(String, Json)] = []

    override func setUpWithError() throws {
        dir = try Fixtures.dir("SAPIENS_GOLDEN")
        doc = try Json.parse(String(decoding: try Data(contentsOf: dir.appendingPathComponent("cases.json")), as: UTF8.self))
        let hw = doc["frame_hw"]!.items!.map { Int($0.double!) }
        frame = RgbImage(hw[1], hw[0], try Npy.read(dir.appendingPathComponent("frame.npy")).pixels())
        meta = [("flip_indices", doc["flip_indices"]!), ("palette_rgb", doc["palette_rgb"]!), ("heatmap_stride", .num("4"))]
    }

    private func allCases() -> [Json] { doc["cases"]!.items! }
    private func str(_ c: Json, _ k: String) -> String { c[k]!.string! }
    private func ints(_ c: Json, _ k: String) -> [Int] { c[k]!.items!.map { Int($0.double!) } }
    private func has(_ c: Json, _ k: String) -> Bool { c["inputs"]![k] != nil }

    /// The cases of `kind`, by their names in GOLDEN_CONTRACT.
    private func cases(_ kind: String, _ names: [String]) -> [Json] {
        let found = allCases().filter { str($0, "kind") == kind }
        XCTAssertEqual(found.map { str($0, "name") }.sorted(), names.sorted(), "\(kind) cases")
        return names.compactMap { n in found.first { str($0, "name") == n } }
    }

    /// Array `key` of group "in" (inputs) or "out" (expected), which GOLDEN_CONTRACT must list with its shape.
    private func arr(_ c: Json, _ group: String, _ key: String) throws -> Npy {
        let name = str(c, "name")
        guard let spec = GOLDEN_CONTRACT[name]?.first(where: { $0.hasPrefix("\(group).\(key):") }) else {
            XCTFail("\(name): \(group).\(key) is read but not in GOLDEN_CONTRACT")
            throw NpyError(message: "not in the contract")
        }
        let file = c[group == "in" ? "inputs" : "expected"]![key]!.string!
        let a = try Npy.read(dir.appendingPathComponent(file))
        XCTAssertEqual(a.shape.count, spec.split(separator: ":")[1].split(separator: ",").count, "\(name) \(key) rank")
        return a
    }

    private func processor(_ c: Json, _ layout: String = "NCHW") throws -> TaskProcessor {
        let hw = ints(c, "input_hw")
        let outs = (c["inputs"]!.fields ?? []).map { $0.0 }.filter { $0 != "boxes" }.map { TensorSpec($0, [-1], "float32") }
        return try processorFor(testManifest(str(c, "task"), (hw[0], hw[1]), decoded: str(c, "kind") == "decoded",
                                             layout: layout, outputs: outs, meta: meta))
    }

    private func prepare(_ c: Json, _ p: TaskProcessor) throws -> Prepared {
        var boxes: [Float]? = nil
        if has(c, "boxes") { boxes = try arr(c, "in", "boxes").floats() }
        return try p.prepare(frame, boxes)
    }

    private func tensor(_ n: Npy) -> SapiensEdgeKit.Tensor { SapiensEdgeKit.Tensor(n.shape, n.floats()) }

    func testFrameToInputTensorEveryTaskAndResamplingPathNCHWAndNHWC() throws {
        let all = cases("preprocess", ["pre_pose", "pre_seg_16x32", "pre_seg_64x80", "pre_dense"])
        XCTAssertEqual(all.count, 4)
        for c in all {
            for layout in ["NCHW", "NHWC"] {
                let p = try processor(c, layout)
                let prep = try prepare(c, p)
                let want = try arr(c, "out", "input")
                let (n, ch, h, w) = (want.shape[0], want.shape[1], want.shape[2], want.shape[3])
                let got = Array(prep.input.prefix(want.data.count))
                let nchw = layout == "NCHW" ? got : nhwcToNchw(SapiensEdgeKit.Tensor([n, h, w, ch], got)).data
                let diff = maxAbsDiff(nchw, want.floats())
                let exact = Double(nchw.indices.filter { nchw[$0] == Float(want.data[$0]) }.count) / Double(nchw.count)
                // One uint8 level is 1/std ~= 0.0175 after normalization.
                XCTAssertLessThanOrEqual(diff, 1.0 / 57.12 + 1e-5, "\(str(c, "name")) \(layout): max diff \(diff)")
                XCTAssertGreaterThanOrEqual(exact, 0.99, "\(str(c, "name")) \(layout): only \(exact) of the values exact")
                if str(c, "task") == "pose" {
                    XCTAssertEqual(maxAbsDiff((prep.context as! PoseContext).centerScales, try arr(c, "out", "center_scale").floats()), 0.0)
                }
                if c["pad"] != nil { XCTAssertEqual((prep.context as! DenseContext).pad, ints(c, "pad")) }
            }
        }
    }

    private func finish(_ c: Json) throws -> TaskResult {
        let p = try processor(c)
        let prep = try prepare(c, p)
        let ins = (c["inputs"]!.fields ?? []).map { $0.0 }.filter { $0 != "boxes" && $0 != "flipped" }
        var flipped: [SapiensEdgeKit.Tensor]? = nil
        if has(c, "flipped") { flipped = [tensor(try arr(c, "in", "flipped"))] }
        return try p.finish(try ins.map { tensor(try arr(c, "in", $0)) }, prep, flipped)
    }

    func testRawAndDecodedPoseOutputsGiveTheRuntimesKeypointsWithin1em3Px() throws {
        let all = cases("raw", ["raw_pose", "raw_pose_flip", "raw_seg_up", "raw_seg_down", "raw_normal", "raw_pointmap"])
            .filter { str($0, "task") == "pose" } + cases("decoded", ["decoded_seg", "decoded_pose", "decoded_normal"])
            .filter { str($0, "task") == "pose" }
        XCTAssertEqual(all.count, 3)
        for c in all {
            let r = try finish(c) as! PoseResult
            let kp = try arr(c, "out", "keypoints").floats()
            XCTAssertLessThanOrEqual(maxAbsDiff(r.keypoints, kp), 1e-3, "\(str(c, "name")): keypoints off by \(maxAbsDiff(r.keypoints, kp)) px")
            XCTAssertLessThanOrEqual(maxAbsDiff(r.scores, try arr(c, "out", "scores").floats()), 1e-6, "\(str(c, "name")): scores")
            XCTAssertEqual(has(c, "flipped"), r.flipTest)
        }
    }

    func testRawAndDecodedSegOutputsGiveTheRuntimesLabelMap() throws {
        let all = cases("raw", ["raw_pose", "raw_pose_flip", "raw_seg_up", "raw_seg_down", "raw_normal", "raw_pointmap"])
            .filter { str($0, "task") == "seg" } + cases("decoded", ["decoded_seg", "decoded_pose", "decoded_normal"])
            .filter { str($0, "task") == "seg" }
        XCTAssertEqual(all.count, 3)
        for c in all {
            let r = try finish(c) as! SegResult
            let want = try arr(c, "out", "labels").ints()
            XCTAssertEqual(want, r.labels, str(c, "name"))
            XCTAssertGreaterThan(Set(want).count, 2, "a label map with boundaries")
        }
    }

    func testRawAndDecodedNormalsAndTheMetricPointmapWithin1em5() throws {
        let all = (cases("raw", ["raw_pose", "raw_pose_flip", "raw_seg_up", "raw_seg_down", "raw_normal", "raw_pointmap"])
            + cases("decoded", ["decoded_seg", "decoded_pose", "decoded_normal"]))
            .filter { ["normal", "pointmap"].contains(str($0, "task")) }
        XCTAssertEqual(all.count, 3)
        for c in all {
            let r = try finish(c)
            if let n = r as? NormalResult {
                XCTAssertLessThanOrEqual(maxAbsDiff(n.normals, try arr(c, "out", "normals").floats()), 1e-5, str(c, "name"))
            } else if let p = r as? PointmapResult {
                XCTAssertLessThanOrEqual(maxAbsDiff(p.pointmap, try arr(c, "out", "pointmap").floats()), 1e-5, str(c, "name"))
                XCTAssertEqual(try arr(c, "out", "focal_length").data[0], p.focalLength, accuracy: 1e-9)
            } else {
                XCTFail("unexpected \(r)")
            }
        }
    }

    func testSegAndNormalOverlaysGiveVisualizePysPixels() throws {
        let all = cases("overlay", ["overlay_seg", "overlay_normal"])
        XCTAssertEqual(all.count, 2)
        let palette = doc["palette_rgb"]!.items!.map { r in r.items!.map { Int($0.double!) } }
        for c in all {
            let got: [UInt32]
            if str(c, "task") == "seg" {
                got = try overlaySeg(frame, try arr(c, "in", "labels").ints(), palette)
            } else {
                got = normalToRgb(try arr(c, "in", "normals").floats())
            }
            let want = try arr(c, "out", "rgb").ints() // (H, W, 3)
            let rgb = (0..<(got.count * 3)).map { i in Int((got[i / 3] >> UInt32(16 - 8 * (i % 3))) & 0xFF) }
            XCTAssertEqual(want, rgb, str(c, "name"))
        }
    }

    func testRGBAPixelsAndARGBPixelsGiveTheSameInputInOneReusedBuffer() throws {
        let c = cases("preprocess", ["pre_pose", "pre_seg_16x32", "pre_seg_64x80", "pre_dense"]).first { str($0, "task") == "seg" }!
        let p = try processor(c)
        let a = try prepare(c, p)
        let first = Array(a.input)
        let rgba = RgbImage(frame.width, frame.height, frame.pixels.map { ($0 << 8) | 0xFF }, .RGBA)
        let b = try p.prepare(rgba)
        XCTAssertEqual(b.input.baseAddress, a.input.baseAddress, "the buffer is reused from frame to frame")
        XCTAssertEqual(first, Array(b.input))
    }

    /// Every case of cases.json is in GOLDEN_CONTRACT and the other way round (a new Python case needs a Swift test).
    func testCasesJsonHoldsExactlyTheContractsCases() {
        XCTAssertEqual(allCases().map { str($0, "name") }.sorted(), GOLDEN_CONTRACT.keys.sorted())
    }
}
