import Foundation

/// An output tensor as float32 (class ids and other integer outputs converted exactly), NCHW like the manifest says.
public struct Tensor {
    public let shape: [Int]
    public let data: [Float]

    public init(_ shape: [Int], _ data: [Float]) {
        self.shape = shape
        self.data = data
    }
}

/// An inference engine behind the kit (runtime/backends/__init__.py's Session; Backend.kt): Core ML and
/// ExecuTorch in their own targets. `run` gets the prepared input in the manifest's layout and returns the
/// outputs in `manifest.outputs` order, 4-D ones in the manifest's layout. Called by one thread at a time.
public protocol Backend: AnyObject {
    var name: String { get }
    func run(_ input: UnsafeBufferPointer<Float>, _ shape: [Int]) throws -> [Tensor]
    /// One line for the screen: engine, version, accelerator.
    func describe() -> String
    func close()
}

public extension Backend {
    func close() {}
}
