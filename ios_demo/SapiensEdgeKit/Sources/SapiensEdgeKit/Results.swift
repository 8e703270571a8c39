import Foundation

/* runtime/results.py in Swift (Results.kt): one result type per task, at the original image size. */

public let POSE_SCORE_THRESHOLD: Float = 0.3 // drawing only; every keypoint and score is kept

/// What every task result has (Kotlin's sealed TaskResult): the task, the original and the input size.
public protocol TaskResult {
    var task: String { get }
    var imageH: Int { get }
    var imageW: Int { get }
    var inputH: Int { get }
    var inputW: Int { get }
}

/// keypoints: persons x K x (x, y) image pixels; scores: persons x K; boxes: persons x 4.
public struct PoseResult: TaskResult {
    public let task = "pose"
    public let imageH: Int, imageW: Int, inputH: Int, inputW: Int
    public let persons: Int
    public let numKeypoints: Int
    public let keypoints: [Float]
    public let scores: [Float]
    public let boxes: [Float]
    public let flipTest: Bool
}

/// labels: (H, W) class ids; fractions: pixel share per class.
public struct SegResult: TaskResult {
    public let task = "seg"
    public let imageH: Int, imageW: Int, inputH: Int, inputW: Int
    public let labels: [Int]
    public let fractions: [Double]
}

/// normals: (H, W, 3) x, y, z in the camera frame.
public struct NormalResult: TaskResult {
    public let task = "normal"
    public let imageH: Int, imageW: Int, inputH: Int, inputW: Int
    public let normals: [Float]
}

/// pointmap: (H, W, 3) metric X, Y, Z; focalLength in network-input pixels.
public struct PointmapResult: TaskResult {
    public let task = "pointmap"
    public let imageH: Int, imageW: Int, inputH: Int, inputW: Int
    public let pointmap: [Float]
    public let scale: Float
    public let focalLength: Double
}
