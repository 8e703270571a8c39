import Foundation
import SapiensEdgeKit

/// Artifacts live in the app's Documents, never in the app bundle (100+ MB): Documents/models/<name>/ holds a whole
/// folder that `sapiens-edge export` wrote (model file or .mlpackage + manifest.json + README.md). Copy one there
/// with Finder (iPhone > Files > Sapiens Edge) or the Files app, or let `download` fetch it on first run (each file
/// checked against the manifest's sha256). The Android app's ModelStore.kt.
struct ModelStore {
    let root: URL

    init() {
        let docs = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        root = docs.appendingPathComponent("models")
        try? FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    /// Folders with a manifest.json (in Documents/models, or dropped straight into Documents), newest first.
    func list() -> [URL] {
        let fm = FileManager.default
        let places = [root, root.deletingLastPathComponent()]
        let found = places.flatMap { (try? fm.contentsOfDirectory(at: $0, includingPropertiesForKeys: [.contentModificationDateKey])) ?? [] }
            .filter { fm.fileExists(atPath: $0.appendingPathComponent(MANIFEST_NAME).path) }
        func date(_ u: URL) -> Date { (try? u.resourceValues(forKeys: [.contentModificationDateKey]).contentModificationDate) ?? .distantPast }
        return found.sorted { date($0) > date($1) }
    }

    /// Download an artifact folder published at `baseUrl` (its manifest.json, then every file it lists) into a
    /// temporary folder that becomes models/<name> only once every sha256 matched. Call off the main thread.
    func download(_ baseUrl: URL, _ name: String) async throws -> URL {
        let fm = FileManager.default
        let tmp = root.appendingPathComponent(".\(name).part")
        try? fm.removeItem(at: tmp)
        try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
        func fetch(_ rel: String) async throws -> URL {
            let dest = tmp.appendingPathComponent(rel)
            try fm.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
            let (file, response) = try await URLSession.shared.download(from: baseUrl.appendingPathComponent(rel))
            if let http = response as? HTTPURLResponse, http.statusCode != 200 {
                throw ModelFileMissingError("\(baseUrl.appendingPathComponent(rel)) answered HTTP \(http.statusCode); "
                    + "publish the whole artifact folder there, or copy it into the app's Documents.")
            }
            try? fm.removeItem(at: dest)
            try fm.moveItem(at: file, to: dest)
            return dest
        }
        _ = try await fetch(MANIFEST_NAME)
        let manifest = try readManifest(tmp, verify: false)
        for (rel, digest) in manifest.files.sorted(by: { $0.key < $1.key }) {
            let file = try await fetch(rel)
            if try sha256File(file) != digest {
                try? fm.removeItem(at: tmp)
                throw ChecksumMismatchError("\(baseUrl.appendingPathComponent(rel)) arrived with another sha256 than its "
                    + "manifest lists; the download was cut or the server holds another file. Try again or copy the folder.")
            }
        }
        _ = try readManifest(tmp) // the manifest's own digest too
        let dest = root.appendingPathComponent(name)
        try? fm.removeItem(at: dest)
        try fm.moveItem(at: tmp, to: dest)
        return dest
    }
}
