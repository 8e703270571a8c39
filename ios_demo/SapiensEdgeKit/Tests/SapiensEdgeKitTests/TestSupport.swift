import Foundation
import SapiensEdgeKit
import XCTest

/// Folders the Python side writes for these tests, passed in the environment (SAPIENS_GOLDEN, SAPIENS_ARTIFACTS:
/// .github/workflows/coreml-validate.yml sets them). Unset: the test is skipped, unless SAPIENS_REQUIRE_FIXTURES=1
/// (the workflow sets it), so a fixture folder that did not arrive fails instead of skipping silently.
enum Fixtures {
    static func dir(_ variable: String) throws -> URL {
        let env = ProcessInfo.processInfo.environment
        guard let path = env[variable], !path.isEmpty else {
            let msg = "\(variable) not set: run through the workflow, or: python -m tests.ios_kit.swift_fixtures DIR"
            if env["SAPIENS_REQUIRE_FIXTURES"] == "1" { throw NpyError(message: msg) }
            throw XCTSkip(msg)
        }
        return URL(fileURLWithPath: path)
    }
}

/// A manifest for unit tests (no file behind it).
func testManifest(_ task: String, _ inputHw: (Int, Int), decoded: Bool = false, layout: String = "NCHW",
                  outputs: [TensorSpec] = [TensorSpec("out", [-1, -1, -1, -1], "float32")],
                  meta: [(String, Json)] = []) -> Manifest {
    let (h, w) = inputHw
    let shape = layout == "NHWC" ? [-1, h, w, 3] : [-1, 3, h, w]
    return Manifest(model: "test-\(task)", task: task, recipe: "coreml-fp32", target: "coreml", precision: "fp32",
                    inputHw: inputHw, files: [:], modelFile: "model.mlpackage",
                    inputs: [TensorSpec("image", shape, "float32", layout)], outputs: outputs,
                    meanRgb: [123.675, 116.28, 103.53], stdRgb: [58.395, 57.12, 57.375],
                    taskMetadata: .obj(meta), exportOptions: .obj(decoded ? [("decoded", .bool(true))] : []),
                    schemaVersion: SCHEMA_VERSION)
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "sizes \(a.count) vs \(b.count)")
    var m = 0.0
    for i in a.indices { m = max(m, abs(Double(a[i]) - Double(b[i]))) }
    return m
}

/// A typed error whose message holds every needle (ErrorsTest.kt's `fails`).
func fails<E: SapiensEdgeException>(_ type: E.Type, _ needles: [String], file: StaticString = #filePath, line: UInt = #line,
                                    _ block: () throws -> Void) {
    do {
        try block()
        XCTFail("no \(E.self) thrown", file: file, line: line)
    } catch let e as E {
        for n in needles where !e.message.contains(n) { XCTFail("'\(n)' not in: \(e.message)", file: file, line: line) }
    } catch {
        XCTFail("expected \(E.self), got \(error)", file: file, line: line)
    }
}
