// swift-tools-version:5.9
// SapiensEdgeKit: the Swift twin of android_demo/kit (one file per Kotlin file, same names).
// - SapiensEdgeKit: Foundation only (builds and tests on macOS and Linux).
// - SapiensEdgeCoreML: the Core ML backend (compiled only where `import CoreML` works).
// - SapiensEdgeExecuTorch: the ExecuTorch backend; ExecuTorch's Swift package is added only when
//   SAPIENS_EDGE_EXECUTORCH=1 is set while resolving (it downloads ~100 MB of xcframeworks), so a plain
//   `swift test` stays light; without it the target compiles to nothing (`#if canImport(ExecuTorch)`).
import Foundation
import PackageDescription

let withExecuTorch = ProcessInfo.processInfo.environment["SAPIENS_EDGE_EXECUTORCH"] == "1"
// The ExecuTorch release the Python side exports with (pyproject.toml: executorch==1.5.1); a .pte runs on the
// runtime of its own release. SAPIENS_EDGE_EXECUTORCH_BRANCH overrides it (ExecuTorch's swiftpm-X.Y.Z branches).
let execuTorchBranch = ProcessInfo.processInfo.environment["SAPIENS_EDGE_EXECUTORCH_BRANCH"] ?? "swiftpm-1.5.1"

var execuTorchDeps: [Target.Dependency] = ["SapiensEdgeKit"]
var packageDeps: [Package.Dependency] = []
if withExecuTorch {
    packageDeps.append(.package(url: "https://github.com/pytorch/executorch", branch: execuTorchBranch))
    execuTorchDeps += [
        .product(name: "executorch", package: "executorch"),
        .product(name: "backend_xnnpack", package: "executorch"),
        .product(name: "backend_coreml", package: "executorch"),
        .product(name: "kernels_optimized", package: "executorch"),
    ]
}

// iOS 16: the coreml-fp32/-fp16/-int8 recipes' deployment target; ExecuTorch's package needs iOS 17.
let iOSPlatform: SupportedPlatform = withExecuTorch ? .iOS(.v17) : .iOS(.v16)

let package = Package(
    name: "SapiensEdgeKit",
    platforms: [iOSPlatform, .macOS(.v13)],
    products: [
        .library(name: "SapiensEdgeKit", targets: ["SapiensEdgeKit"]),
        .library(name: "SapiensEdgeCoreML", targets: ["SapiensEdgeCoreML"]),
        .library(name: "SapiensEdgeExecuTorch", targets: ["SapiensEdgeExecuTorch"]),
    ],
    dependencies: packageDeps,
    targets: [
        .target(name: "SapiensEdgeKit"),
        .target(name: "SapiensEdgeCoreML", dependencies: ["SapiensEdgeKit"]),
        // The app links its backends' kernels with -all_load (project.yml) so they register at start-up.
        .target(name: "SapiensEdgeExecuTorch", dependencies: execuTorchDeps),
        .testTarget(name: "SapiensEdgeKitTests", dependencies: ["SapiensEdgeKit", "SapiensEdgeCoreML"]),
    ]
)
