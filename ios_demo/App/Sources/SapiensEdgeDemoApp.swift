import SwiftUI

/// The demo app: live camera or a picked photo -> the kit's Predictor -> the task's overlay, with latency and
/// compute units on screen. The model comes from the app's Documents (Finder / Files app) or a download.
@main
struct SapiensEdgeDemoApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}
