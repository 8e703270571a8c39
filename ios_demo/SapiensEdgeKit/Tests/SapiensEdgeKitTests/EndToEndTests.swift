import Foundation
import SapiensEdgeKit
import XCTest
#if canImport(CoreML)
import SapiensEdgeCoreML
#endif

/// Tiny seg and pose models exported by the Python side in the same run (coreml-fp32, image input), run by Core ML
/// through the kit, against `sapiens_edge.runtime.load(...).predict` (coremltools' predict on the same Mac, CPU
/// only on both sides) on the same photo and boxes (EndToEndTest.kt). The artifacts are read with verify on, so
/// the kit's SHA-256 and manifest digest are checked against Python's hashlib too. Same tolerances as the Kotlin
/// test: input <= 1 uint8 level at rounding ties, raw outputs <= 1e-3 of their range, >= 99 % labels, keypoints
/// <= 0.05 px median and 1 px max. Skipped where Core ML does not exist (Linux).
final class EndToEndTests: XCTestCase {
    #if canImport(CoreML)
    private var dir = URL(fileURLWithPath: "/")
    private var frame = RgbImage(0, 0, [])

    override func setUpWithError() throws {
        dir = try Fixtures.dir("SAPIENS_ARTIFACTS")
        let doc = try Json.parse(String(decoding: try Data(contentsOf: dir.appendingPathComponent("cases.json")), as: UTF8.self))
        let hw = doc["frame_hw"]!.items!.map { Int($0.double!) }
        frame = RgbImage(hw[1], hw[0], try Npy.read(dir.appendingPathComponent("frame.npy")).pixels())
    }

    private func npy(_ task: String, _ name: String) throws -> Npy { try Npy.read(dir.appendingPathComponent("\(task).\(name).npy")) }

    /// The kit's input equals Python's (<= 1 uint8 level at rounding ties); Core ML from Swift on Python's input gives Python's outputs.
    private func checkInputAndEngine(_ p: Predictor, _ boxes: [Float]?) throws {
        let prepared = try p.processor.prepare(frame, boxes)
        let want = try npy(p.manifest.task, "input")
        let got = Array(prepared.input.prefix(want.data.count))
        XCTAssertLessThanOrEqual(maxAbsDiff(got, want.floats()), 1.0 / 57.12 + 1e-5, "input off by \(maxAbsDiff(got, want.floats()))")
        let same = Double(want.data.indices.filter { got[$0] == Float(want.data[$0]) }.count) / Double(got.count)
        XCTAssertGreaterThanOrEqual(same, 0.99, "only \(same) of the input values equal")
        let python = InputBuffer()
        let pyInput = python.acquire(want.data.count)
        for (i, v) in want.floats().enumerated() { pyInput[i] = v }
        let raw = try p.run(Prepared(pyInput, prepared.shape, prepared.layout, prepared.context, owner: python))[0]
        let ref = try npy(p.manifest.task, "raw").floats()
        let range = Double(ref.map { abs($0) }.max()!)
        XCTAssertLessThanOrEqual(maxAbsDiff(raw.data, ref), 1e-3 * range, "engines differ by \(maxAbsDiff(raw.data, ref)) (range \(range))")
    }

    func testTinySegArtifactThroughCoreMLEqualsThePythonRuntime() throws {
        let p = try loadCoreML(dir.appendingPathComponent("seg"), task: "seg", computeUnits: .cpu)
        try checkInputAndEngine(p, nil)
        let r = try p.predict(frame) as! SegResult
        let want = try npy("seg", "labels").ints()
        let same = Double(want.indices.filter { want[$0] == r.labels[$0] }.count) / Double(want.count)
        XCTAssertGreaterThanOrEqual(same, 0.99, "only \(same) of the labels agree")
        XCTAssertGreaterThanOrEqual(Set(want).count, 2, "the tiny model segments something")
        XCTAssertTrue(p.backend.describe().hasPrefix("Core ML (cpu"))
    }

    func testTinyPoseArtifactWithTwoBoxesAndFlipTestEqualsThePythonRuntime() throws {
        let boxes = try Npy.read(dir.appendingPathComponent("boxes.npy")).floats()
        let p = try loadCoreML(dir.appendingPathComponent("pose"), task: "pose", computeUnits: .cpu)
        try checkInputAndEngine(p, boxes)
        let r = try p.predict(frame, boxes) as! PoseResult
        XCTAssertEqual(r.persons, 2)
        XCTAssertTrue(r.flipTest)
        let kp = try npy("pose", "keypoints").floats()
        let sc = try npy("pose", "scores").floats()
        let d = (0..<(kp.count / 2)).map { i in
            Double(hypotf(r.keypoints[2 * i] - kp[2 * i], r.keypoints[2 * i + 1] - kp[2 * i + 1]))
        }.sorted()
        XCTAssertTrue(d[d.count / 2] <= 0.05 && d.last! <= 1.0, "keypoints off by \(d.last!) px (median \(d[d.count / 2]))")
        let scoreRange = Double(sc.map { abs($0) }.max()!)
        XCTAssertLessThanOrEqual(maxAbsDiff(r.scores, sc), 1e-3 * scoreRange, "scores off by \(maxAbsDiff(r.scores, sc))")
    }
    #else
    func testCoreMLIsNotOnThisPlatform() throws {
        throw XCTSkip("Core ML exists on Apple platforms only: the end-to-end test runs in the macOS workflow")
    }
    #endif
}
