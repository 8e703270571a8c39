import AVFoundation
import SapiensEdgeKit

/// The back camera as 32BGRA frames on a capture queue. AVFoundation already drops late frames
/// (alwaysDiscardsLateVideoFrames); InferenceLoop keeps only the newest one while the model runs.
final class Camera: NSObject, AVCaptureVideoDataOutputSampleBufferDelegate, @unchecked Sendable {
    private let session = AVCaptureSession()
    private let output = AVCaptureVideoDataOutput()
    private let queue = DispatchQueue(label: "sapiens-edge.camera")
    /// Called on the capture queue with each frame (upright, portrait).
    var onFrame: (RgbImage) -> Void = { _ in }
    var paused = false

    /// Ask for access, configure and start (off the main thread: startRunning blocks).
    func start(denied: @escaping () -> Void) {
        AVCaptureDevice.requestAccess(for: .video) { granted in
            guard granted else { DispatchQueue.main.async(execute: denied); return }
            self.queue.async { self.configure(); self.session.startRunning() }
        }
    }

    func stop() { queue.async { self.session.stopRunning() } }

    private func configure() {
        guard session.inputs.isEmpty,
              let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
              let input = try? AVCaptureDeviceInput(device: device) else { return }
        session.beginConfiguration()
        session.sessionPreset = .hd1280x720 // the kit resizes to the model's input anyway
        if session.canAddInput(input) { session.addInput(input) }
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.alwaysDiscardsLateVideoFrames = true
        output.setSampleBufferDelegate(self, queue: queue)
        if session.canAddOutput(output) { session.addOutput(output) }
        if let connection = output.connection(with: .video), connection.isVideoOrientationSupported {
            connection.videoOrientation = .portrait
        }
        session.commitConfiguration()
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard !paused, let buffer = CMSampleBufferGetImageBuffer(sampleBuffer), let frame = rgbImage(buffer) else { return }
        onFrame(frame)
    }
}
