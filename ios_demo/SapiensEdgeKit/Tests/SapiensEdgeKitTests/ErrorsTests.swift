import Foundation
@testable import SapiensEdgeKit
import XCTest

/// Bad input gets a typed error whose message says what to do (ErrorsTest.kt).
final class ErrorsTests: XCTestCase {
    private var tmp = URL(fileURLWithPath: NSTemporaryDirectory())

    override func setUpWithError() throws {
        tmp = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sapiens-edge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    private static func set(_ fields: inout [(String, Json)], _ key: String, _ value: Json) {
        if let i = fields.firstIndex(where: { $0.0 == key }) { fields[i].1 = value } else { fields.append((key, value)) }
    }

    private static func remove(_ fields: inout [(String, Json)], _ key: String) { fields.removeAll { $0.0 == key } }

    /// A sealed artifact folder: model.bin (stand-in bytes) + manifest.json with every digest, as export writes it.
    private func artifact(_ edit: (inout [(String, Json)]) -> Void = { _ in }) throws -> URL {
        let dir = tmp.appendingPathComponent("art")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data((0..<64).map { UInt8($0) }).write(to: dir.appendingPathComponent("model.bin"))
        func spec(_ name: String, _ shape: [Int]) -> Json {
            .obj([("name", .str(name)), ("shape", .arr(shape.map { Json.num("\($0)") })), ("dtype", .str("float32")),
                  ("layout", .str("NCHW"))])
        }
        let palette = Json.arr((0..<29).map { i in Json.arr([Json.num("\(i)"), Json.num("0"), Json.num("0")]) })
        let digest = try sha256File(dir.appendingPathComponent("model.bin"))
        var fields: [(String, Json)] = [
            ("model", .str("tiny-seg")), ("task", .str("seg")), ("recipe", .str("coreml-fp32")),
            ("target", .str("coreml")), ("precision", .str("fp32")),
            ("input_hw", .arr([.num("32"), .num("16")])),
            ("files", .obj([("model.bin", .str(digest))])),
            ("model_file", .str("model.bin")),
            ("inputs", .arr([spec("image", [1, 3, 32, 16])])),
            ("outputs", .arr([spec("logits", [1, 29, 32, 16])])),
            ("normalization", .obj([("mean_rgb", .arr([.num("123.675"), .num("116.28"), .num("103.53")])),
                                    ("std_rgb", .arr([.num("58.395"), .num("57.12"), .num("57.375")]))])),
            ("source_weights", .obj([])), ("tool_versions", .obj([])),
            ("task_metadata", .obj([("palette_rgb", palette)])),
            ("export_options", .obj([])), ("created", .str("x")), ("schema_version", .num("2")),
        ]
        fields.append((DIGEST_KEY, .str(manifestDigest(.obj(fields)))))
        edit(&fields)
        try Data(canonicalJson(.obj(fields)).utf8).write(to: dir.appendingPathComponent(MANIFEST_NAME))
        return dir
    }

    func testASealedArtifactReadsBack() throws {
        let m = try readManifest(try artifact(), task: "seg")
        XCTAssertEqual(m.model, "tiny-seg")
        XCTAssertEqual(m.inputHw.1, 16)
        XCTAssertEqual(m.inputHw.0, 32)
    }

    /// The kit's SHA-256 (CryptoKit's on Apple platforms) and the plain-Swift one used where CryptoKit is missing,
    /// against FIPS 180-2's examples; the plain one fed in uneven pieces (partial blocks carried between updates).
    /// The end-to-end test checks the kit's on Python's digests too.
    func testSha256KnownAnswers() {
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        var pure = Sha256()
        var at = 0
        for (n, piece) in [1, 63, 64, 65, 127, 999_680].enumerated() {
            pure.update(Array(million[at..<(at + piece)]))
            at += piece
            XCTAssertLessThanOrEqual(at, million.count, "piece \(n)")
        }
        XCTAssertEqual(at, million.count)
        XCTAssertEqual(pure.finish(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        for (text, digest) in [("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
                               ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")] {
            var h = Sha256()
            h.update(Array(text.utf8))
            XCTAssertEqual(h.finish(), digest, "plain Swift, '\(text)'")
        }
        XCTAssertEqual(sha256Hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(sha256Hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(sha256Hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let file = tmp.appendingPathComponent("million-a")
        try? Data(repeating: UInt8(ascii: "a"), count: 1_000_000).write(to: file)
        XCTAssertEqual(try sha256File(file), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testUnknownManifestSchema() {
        fails(ManifestVersionError.self, ["schema 3", "Upgrade the app"]) {
            _ = try readManifest(try artifact { Self.set(&$0, "schema_version", .num("3")) })
        }
        fails(ManifestError.self, ["schema_version"]) { _ = try readManifest(try artifact { Self.remove(&$0, "schema_version") }) }
        fails(ManifestVersionError.self, ["Upgrade the app"]) {
            _ = try readManifest(try artifact { Self.set(&$0, "schema_version", .num("99999999999999999999")) })
        }
    }

    func testMalformedTaskMetadata() throws {
        let bad = try artifact { Self.set(&$0, "task_metadata", .obj([("palette_rgb", .arr([.str("red")]))])) }
        fails(ManifestError.self, ["'palette_rgb' is malformed", "re-export"]) {
            _ = try metadataRows(try readManifest(bad, verify: false), "palette_rgb")
        }
    }

    func testManifestThatIsNotJsonOrLacksARequiredField() throws {
        let dir = try artifact()
        try Data("{\"schema_version\": 2,".utf8).write(to: dir.appendingPathComponent(MANIFEST_NAME))
        fails(ManifestError.self, ["is not valid JSON", "copy or re-export"]) { _ = try readManifest(dir) }
        for field in ["model_file", "task", "inputs", "normalization"] {
            fails(ManifestError.self, ["'\(field)' is missing", "re-export"]) {
                _ = try readManifest(try artifact { Self.remove(&$0, field) })
            }
        }
    }

    func testMissingModelFileOrManifest() throws {
        let dir = try artifact()
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model.bin"))
        fails(ModelFileMissingError.self, ["missing model.bin", "copy the whole artifact folder"]) { _ = try readManifest(dir) }
        try FileManager.default.removeItem(at: dir.appendingPathComponent(MANIFEST_NAME))
        fails(ModelFileMissingError.self, ["has no manifest.json"]) { _ = try readManifest(dir) }
        fails(ModelFileMissingError.self, ["not found"]) { _ = try readManifest(self.tmp.appendingPathComponent("nowhere")) }
    }

    func testSha256MismatchOfTheModelFileOrOfTheManifestItself() throws {
        let dir = try artifact()
        let handle = try FileHandle(forWritingTo: dir.appendingPathComponent("model.bin"))
        handle.seekToEndOfFile()
        handle.write(Data([1]))
        try handle.close()
        fails(ChecksumMismatchError.self, ["model.bin changed since export", "Copy it again"]) { _ = try readManifest(dir) }
        _ = try readManifest(dir, verify: false) // the check can be skipped on purpose
        fails(ChecksumMismatchError.self, ["manifest_sha256 mismatch"]) {
            _ = try readManifest(try artifact { Self.set(&$0, "input_hw", .arr([.num("64"), .num("16")])) })
        }
    }

    func testArtifactForAnotherTaskThanRequested() {
        fails(WrongTaskError.self, ["holds a 'seg' model", "'pose' was asked"]) { _ = try readManifest(try artifact(), task: "pose") }
    }

    func testEmptyImageOrWrongPixelCount() throws {
        let p = try processorFor(testManifest("seg", (32, 16)))
        fails(ImageError.self, ["empty"]) { _ = try p.prepare(RgbImage(0, 0, [])) }
        fails(ImageError.self, ["holds 5 pixels", "12 needed"]) { _ = try p.prepare(RgbImage(4, 3, [UInt32](repeating: 0, count: 5))) }
        fails(InputShapeError.self, ["only apply to the pose task"]) {
            _ = try p.prepare(RgbImage(4, 3, [UInt32](repeating: 0, count: 12)), [0, 0, 1, 1])
        }
        let pose = try processorFor(testManifest("pose", (32, 16), meta: [("flip_indices", .arr([]))]))
        fails(InputShapeError.self, ["x2 >= x1"]) { _ = try pose.prepare(RgbImage(4, 3, [UInt32](repeating: 0, count: 12)), [3, 0, 1, 1]) }
    }

    /// A backend that returns whatever shape it is told to.
    private final class FakeBackend: Backend {
        let name = "fake"
        let shapes: [[Int]]
        init(_ shapes: [[Int]]) { self.shapes = shapes }
        func run(_ input: UnsafeBufferPointer<Float>, _ shape: [Int]) throws -> [SapiensEdgeKit.Tensor] {
            shapes.map { SapiensEdgeKit.Tensor($0, [Float](repeating: 0, count: $0.reduce(1, *))) }
        }
        func describe() -> String { "fake" }
    }

    func testOutputTensorWhoseShapeContradictsTheManifest() throws {
        let text = String(decoding: try Data(contentsOf: try artifact().appendingPathComponent(MANIFEST_NAME)), as: UTF8.self)
        let m = try Manifest.fromJson(try Json.parse(text))
        let img = RgbImage(4, 3, [UInt32](repeating: 0, count: 12))
        _ = try Predictor(m, FakeBackend([[1, 29, 32, 16]])).predict(img) // the right shape runs
        fails(OutputShapeError.self, ["'logits' has shape [1, 28, 32, 16]", "[1, 29, 32, 16]", "re-export"]) {
            _ = try Predictor(m, FakeBackend([[1, 28, 32, 16]])).predict(img)
        }
        fails(OutputShapeError.self, ["returned 2 output(s)"]) {
            _ = try Predictor(m, FakeBackend([[1, 29, 32, 16], [1]])).predict(img)
        }
        let decoded = testManifest("seg", (32, 16), decoded: true, outputs: [TensorSpec("labels", [1, -1, -1, -1], "int32")])
        fails(OutputShapeError.self, ["expected 3 dimensions"]) {
            _ = try Predictor(decoded, FakeBackend([[1, 1, 32, 16]])).predict(img)
        }
    }
}
