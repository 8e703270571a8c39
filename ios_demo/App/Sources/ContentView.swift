import ImageIO
import PhotosUI
import SapiensEdgeCoreML
import SapiensEdgeKit
import SwiftUI

/// One screen: the overlay of the newest frame (camera) or of a picked photo (tap it to go back to the camera),
/// the model and compute-unit choice, and the recipe, engine and pre / model / post milliseconds.
struct ContentView: View {
    @StateObject private var state = DemoState()

    var body: some View {
        ZStack(alignment: .bottom) {
            Color.black.ignoresSafeArea()
            if let image = state.image {
                Image(decorative: image.image, scale: 1).resizable().scaledToFit()
                    .onTapGesture { state.backToCamera() }
            } else {
                Text(state.models.isEmpty ? ModelStoreHelp.text : "Pick a model").foregroundColor(.white).padding()
            }
            VStack(alignment: .leading, spacing: 8) {
                Text(state.stats).font(.system(.footnote, design: .monospaced)).foregroundColor(.white)
                HStack {
                    Menu(state.current?.lastPathComponent ?? "Model") {
                        ForEach(state.models, id: \.self) { url in
                            Button(url.lastPathComponent) { state.open(url) }
                        }
                        Button("Refresh") { state.refresh() }
                        Button("Download…") { state.showDownload = true }
                    }
                    Picker("Compute units", selection: $state.computeUnits) {
                        ForEach(ComputeUnits.allCases, id: \.self) { Text($0.rawValue).tag($0) }
                    }
                    .onChange(of: state.computeUnits) { _ in state.reopen() }
                    PhotosPicker(selection: $state.photo, matching: .images) { Image(systemName: "photo") }
                        .onChange(of: state.photo) { item in state.run(item) }
                }
                .buttonStyle(.bordered)
            }
            .padding()
            .background(Color.black.opacity(0.5))
        }
        .onAppear { state.start() }
        .sheet(isPresented: $state.showDownload) { DownloadView(state: state) }
    }
}

enum ModelStoreHelp {
    static let text = "No model yet. Copy an artifact folder from `sapiens-edge export --recipe coreml-fp16` into "
        + "this app's Documents (Finder > iPhone > Files), or download one (Model > Download)."
}

/// Base URL + name of a published artifact folder (ModelStore.download checks every sha256).
struct DownloadView: View {
    @ObservedObject var state: DemoState
    @State private var url = "https://"
    @State private var name = "model"

    var body: some View {
        Form {
            TextField("Folder URL (holds manifest.json)", text: $url).textInputAutocapitalization(.never)
            TextField("Name", text: $name).textInputAutocapitalization(.never)
            Button("Download and check sha256") { state.download(url, name) }
        }
    }
}

/// The app's state, changed on the main thread only (callbacks arrive there); inference runs in InferenceLoop's queue.
final class DemoState: ObservableObject {
    @Published var image: CGImageBox?
    @Published var stats = ""
    @Published var models: [URL] = []
    @Published var current: URL?
    @Published var computeUnits: ComputeUnits = .all
    @Published var photo: PhotosPickerItem?
    @Published var showDownload = false
    private let store = ModelStore()
    /// The photo turned upright by its EXIF orientation, at most 1024 px on its long side.
    static let upright: CFDictionary = [kCGImageSourceCreateThumbnailWithTransform as String: true,
                                        kCGImageSourceCreateThumbnailFromImageAlways as String: true,
                                        kCGImageSourceThumbnailMaxPixelSize as String: 1024] as [String: Any] as CFDictionary
    private let camera = Camera()
    private let loop = InferenceLoop()

    func start() {
        refresh()
        loop.onResult = { [weak self] out in self?.image = out.image; self?.stats = out.stats }
        loop.onError = { [weak self] text in self?.stats = text }
        camera.onFrame = { [loop] frame in loop.submit(frame) }
        camera.start { [weak self] in self?.stats = "Camera access denied: allow it in Settings, or pick a photo." }
        if let first = models.first { open(first) }
    }

    func refresh() { models = store.list() }

    func open(_ url: URL) {
        current = url
        stats = "Loading \(url.lastPathComponent) (\(computeUnits.rawValue))… the first Neural Engine load compiles for seconds."
        loop.open(url, computeUnits: computeUnits) { [weak self] text in self?.stats = text }
    }

    func reopen() { if let url = current { open(url) } }

    func backToCamera() { camera.paused = false }

    /// A picked photo replaces the camera until the overlay is tapped.
    func run(_ item: PhotosPickerItem?) {
        guard let item = item else { return }
        camera.paused = true
        Task { @MainActor in
            guard let data = try? await item.loadTransferable(type: Data.self),
                  let source = CGImageSourceCreateWithData(data as CFData, nil),
                  let cg = CGImageSourceCreateThumbnailAtIndex(source, 0, DemoState.upright),
                  let frame = rgbImage(cg) else {
                stats = "Could not read that photo."
                return
            }
            loop.submit(frame)
        }
    }

    func download(_ url: String, _ name: String) {
        guard let base = URL(string: url) else { stats = "Not a URL: \(url)"; return }
        showDownload = false
        stats = "Downloading \(name)…"
        Task { @MainActor in
            do {
                let folder = try await store.download(base, name)
                refresh()
                open(folder)
            } catch {
                stats = error.localizedDescription
            }
        }
    }
}
