import Foundation

/// manifest.py's SCHEMA_VERSION and the versions this kit reads (1: no self-digest, 2: `manifest_sha256`).
public let SCHEMA_VERSION = 2
public let MANIFEST_NAME = "manifest.json"
public let DIGEST_KEY = "manifest_sha256"
public let TASKS = ["pose", "seg", "normal", "pointmap"]

/// manifest.py's TensorSpec: `shape` entries <= 0 are dynamic.
public struct TensorSpec: Equatable {
    public let name: String
    public let shape: [Int]
    public let dtype: String
    public let layout: String

    public init(_ name: String, _ shape: [Int], _ dtype: String, _ layout: String = "NCHW") {
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.layout = layout
    }
}

/// manifest.py's Manifest (the fields an app needs), read from an artifact folder's manifest.json.
public struct Manifest {
    public let model: String
    public let task: String
    public let recipe: String
    public let target: String
    public let precision: String
    public let inputHw: (Int, Int)
    public let files: [String: String]
    public let modelFile: String
    public let inputs: [TensorSpec]
    public let outputs: [TensorSpec]
    public let meanRgb: [Float]
    public let stdRgb: [Float]
    public let taskMetadata: Json
    public let exportOptions: Json
    public let schemaVersion: Int

    public init(model: String, task: String, recipe: String, target: String, precision: String, inputHw: (Int, Int),
                files: [String: String], modelFile: String, inputs: [TensorSpec], outputs: [TensorSpec],
                meanRgb: [Float], stdRgb: [Float], taskMetadata: Json, exportOptions: Json, schemaVersion: Int) {
        self.model = model; self.task = task; self.recipe = recipe; self.target = target; self.precision = precision
        self.inputHw = inputHw; self.files = files; self.modelFile = modelFile; self.inputs = inputs
        self.outputs = outputs; self.meanRgb = meanRgb; self.stdRgb = stdRgb; self.taskMetadata = taskMetadata
        self.exportOptions = exportOptions; self.schemaVersion = schemaVersion
    }

    /// Decoded outputs (issue 22 part 1): the graph already holds the task's decoding.
    public var decoded: Bool { exportOptions["decoded"]?.boolValue == true }

    /// Core ML image input (export/coreml.py's default): the model normalizes inside, the backend feeds pixels.
    public var imageInput: Bool { exportOptions["input"]?["kind"]?.string == "image" }

    public var inputSpec: TensorSpec { inputs[0] }

    /// Parse a manifest document; location names the file in error messages.
    public static func fromJson(_ doc: Json, _ location: String = MANIFEST_NAME) throws -> Manifest {
        guard case .obj = doc else {
            throw ManifestError("\(location) is not a JSON object: not a sapiens-edge manifest.")
        }
        // An integer too large for Int is a schema from the future, not a malformed manifest.
        guard let v = doc["schema_version"], v.isInt, case let .num(text) = v else {
            throw ManifestError("\(location) has no integer schema_version: not a sapiens-edge manifest. Re-export it.")
        }
        let version = Int(text) ?? Int.max
        if version > SCHEMA_VERSION || version < 1 {
            throw ManifestVersionError(
                "\(location) uses manifest schema \(version); this kit reads schemas 1 to \(SCHEMA_VERSION). "
                    + "Upgrade the app's sapiens-edge kit, or re-export the artifact with the sapiens-edge release "
                    + "the app was built for.")
        }
        let f = Fields(root: doc, location: location)
        let norm = try f.obj("normalization")
        let inputHw = try f.ints(doc, "input_hw")
        if inputHw.count != 2 || inputHw.contains(where: { $0 <= 0 }) {
            throw ManifestError("\(location): input_hw \(inputHw) is not [height, width].")
        }
        var files: [String: String] = [:]
        for (k, value) in try f.obj("files").fields ?? [] {
            guard let s = value.string else { throw f.bad("files.\(k)") }
            files[k] = s
        }
        return Manifest(
            model: try f.str(doc, "model"), task: try f.str(doc, "task"), recipe: try f.str(doc, "recipe"),
            target: try f.str(doc, "target"), precision: try f.str(doc, "precision"),
            inputHw: (inputHw[0], inputHw[1]), files: files, modelFile: try f.str(doc, "model_file"),
            inputs: try f.specs("inputs"), outputs: try f.specs("outputs"),
            meanRgb: try f.floats(norm, "mean_rgb", 3), stdRgb: try f.floats(norm, "std_rgb", 3),
            taskMetadata: objectOrEmpty(doc["task_metadata"]), exportOptions: objectOrEmpty(doc["export_options"]),
            schemaVersion: version)
    }

    private static func objectOrEmpty(_ j: Json?) -> Json {
        if let j = j, j.fields != nil { return j }
        return .obj([])
    }

    private struct Fields {
        let root: Json
        let location: String

        func bad(_ field: String) -> ManifestError {
            ManifestError("\(location): field '\(field)' is missing or malformed; re-export the artifact.")
        }

        func str(_ o: Json, _ k: String) throws -> String {
            guard let s = o[k]?.string else { throw bad(k) }
            return s
        }

        func obj(_ k: String) throws -> Json {
            guard let o = root[k], o.fields != nil else { throw bad(k) }
            return o
        }

        /// Dynamic dims are written as names or null by some exporters: -1 here.
        func ints(_ o: Json, _ k: String) throws -> [Int] {
            guard let a = o[k]?.items else { throw bad(k) }
            return a.map { $0.double.map(truncInt) ?? -1 }
        }

        func floats(_ o: Json, _ k: String, _ n: Int) throws -> [Float] {
            guard let a = o[k]?.items, a.count == n else { throw bad("normalization.\(k)") }
            return try a.map { item -> Float in
                guard let d = item.double else { throw bad("normalization.\(k)") }
                return Float(d)
            }
        }

        func specs(_ k: String) throws -> [TensorSpec] {
            guard let a = root[k]?.items, !a.isEmpty else { throw bad(k) }
            return try a.map { t -> TensorSpec in
                guard t.fields != nil else { throw bad(k) }
                guard t["shape"]?.items != nil else { throw bad("\(k).shape") }
                return TensorSpec(try str(t, "name"), try ints(t, "shape"), try str(t, "dtype"), t["layout"]?.string ?? "NCHW")
            }
        }
    }
}

/// sha256 of the canonical JSON of `doc` without its digest field (manifest.py's manifest_digest).
public func manifestDigest(_ doc: Json) -> String {
    let kept = (doc.fields ?? []).filter { $0.0 != DIGEST_KEY }
    return sha256Hex(Array(canonicalJson(.obj(kept)).utf8))
}

public func sha256Hex(_ bytes: [UInt8]) -> String {
    var h = Hasher256()
    h.update(bytes)
    return h.finish()
}

public func sha256File(_ file: URL) throws -> String {
    let handle = try FileHandle(forReadingFrom: file)
    defer { try? handle.close() }
    var h = Hasher256()
    while true {
        let chunk = handle.readData(ofLength: 1 << 20)
        if chunk.isEmpty { break }
        h.update(chunk)
    }
    return h.finish()
}

private func isDirectory(_ url: URL) -> Bool {
    var dir: ObjCBool = false
    return FileManager.default.fileExists(atPath: url.path, isDirectory: &dir) && dir.boolValue
}

private func isFile(_ url: URL) -> Bool {
    var dir: ObjCBool = false
    return FileManager.default.fileExists(atPath: url.path, isDirectory: &dir) && !dir.boolValue
}

/// Read an artifact folder's manifest and (by default) verify it like manifest.py's read_manifest: the
/// manifest's own digest (schema 2), every listed file present (the model file first) and its sha256.
/// `task`, when given, must be the artifact's task. A Core ML model file (`model.mlpackage`) is a folder:
/// the manifest lists the files inside it, and those are what is checked.
public func readManifest(_ folder: URL, task: String? = nil, verify: Bool = true) throws -> Manifest {
    let path = folder.appendingPathComponent(MANIFEST_NAME)
    if !isDirectory(folder) {
        throw ModelFileMissingError("Artifact folder not found: \(folder.path). Copy the whole folder `sapiens-edge "
            + "export` wrote (e.g. into the app's Documents with Finder or the Files app).")
    }
    if !isFile(path) {
        throw ModelFileMissingError("\(folder.path) has no \(MANIFEST_NAME): not a sapiens-edge artifact or an "
            + "interrupted copy. Copy the whole folder again.")
    }
    let doc: Json
    do {
        let data = try Data(contentsOf: path)
        guard let text = String(data: data, encoding: .utf8) else {
            throw JsonSyntaxException(message: "not UTF-8")
        }
        doc = try Json.parse(text)
    } catch let e as JsonSyntaxException {
        throw ManifestError("\(path.path) is not valid JSON (\(e.message)); the artifact is damaged, copy or re-export it.")
    }
    let manifest = try Manifest.fromJson(doc, path.path)
    if let task = task, manifest.task != task {
        throw WrongTaskError("\(folder.path) holds a '\(manifest.task)' model (\(manifest.model)), but '\(task)' was "
            + "asked for. Pick the artifact exported for \(task) (sapiens-edge export sapiens2-0.4b-\(task) ...).")
    }
    if !TASKS.contains(manifest.task) {
        throw WrongTaskError("\(path.path): task '\(manifest.task)' is not one the kit decodes (\(TASKS.joined(separator: ", "))).")
    }
    if verify {
        try verifyManifest(path, doc, manifest)
        try verifyFiles(folder, manifest)
    }
    return manifest
}

private func verifyManifest(_ path: URL, _ doc: Json, _ manifest: Manifest) throws {
    let stored = doc[DIGEST_KEY]?.string
    if stored == nil && manifest.schemaVersion == 1 { return } // predates digests: only the files are checked
    if stored != manifestDigest(doc) {
        let why = stored == nil ? "has no \(DIGEST_KEY)" : "changed since export (\(DIGEST_KEY) mismatch)"
        throw ChecksumMismatchError("\(path.path) \(why): the manifest was edited or damaged, so its normalization, "
            + "task and file list cannot be trusted. Copy the artifact folder again or re-export it.")
    }
}

private func verifyFiles(_ folder: URL, _ manifest: Manifest) throws {
    let modelUrl = folder.appendingPathComponent(manifest.modelFile)
    let names = manifest.files.keys.filter { $0 != manifest.modelFile }.sorted()
    var missing = (isFile(modelUrl) || isDirectory(modelUrl)) ? [] : [manifest.modelFile]
    missing += names.filter { !isFile(folder.appendingPathComponent($0)) }
    if !missing.isEmpty {
        throw ModelFileMissingError("\(folder.path) is missing \(missing.joined(separator: ", ")); copy the whole "
            + "artifact folder (100+ MB model files are easy to truncate: compare sizes, or copy it again).")
    }
    let covered = manifest.files[manifest.modelFile] != nil
        || (isDirectory(modelUrl) && manifest.files.keys.contains { $0.hasPrefix(manifest.modelFile + "/") })
    if !covered {
        throw ManifestError("\(folder.path)/\(MANIFEST_NAME) does not list the sha256 of its model file "
            + "\(manifest.modelFile); re-export the artifact.")
    }
    let bad = try manifest.files.keys.sorted().filter { name in
        try sha256File(folder.appendingPathComponent(name)) != manifest.files[name]
    }
    if !bad.isEmpty {
        throw ChecksumMismatchError("\(folder.path): \(bad.joined(separator: ", ")) changed since export (sha256 "
            + "mismatch): the file is corrupt, truncated or was swapped. Copy it again or re-export the artifact.")
    }
}
