import CoreGraphics
import CoreVideo
import SapiensEdgeKit

/* The only Apple-specific conversions (the Android app's Frames.kt): camera buffers and CGImages <-> the kit's
 * packed ARGB UInt32 pixels, and the overlay pixel buffer -> CGImage. All drawing is the kit's. */

/// A 32BGRA camera buffer -> RgbImage: BGRA bytes read as little-endian UInt32 are 0xAARRGGBB (ARGB).
func rgbImage(_ buffer: CVPixelBuffer) -> RgbImage? {
    guard CVPixelBufferGetPixelFormatType(buffer) == kCVPixelFormatType_32BGRA else { return nil }
    CVPixelBufferLockBaseAddress(buffer, .readOnly)
    defer { CVPixelBufferUnlockBaseAddress(buffer, .readOnly) }
    let w = CVPixelBufferGetWidth(buffer), h = CVPixelBufferGetHeight(buffer)
    let stride = CVPixelBufferGetBytesPerRow(buffer)
    guard let base = CVPixelBufferGetBaseAddress(buffer) else { return nil }
    var pixels = [UInt32](repeating: 0, count: w * h)
    pixels.withUnsafeMutableBytes { dst in
        for y in 0..<h {
            dst.baseAddress!.advanced(by: y * w * 4).copyMemory(from: base.advanced(by: y * stride), byteCount: w * 4)
        }
    }
    return RgbImage(w, h, pixels, .ARGB) // iOS is little-endian
}

/// Any CGImage (a picked photo) drawn into 32-bit BGRA -> RgbImage, at most `maxSide` pixels on its long side.
func rgbImage(_ image: CGImage, maxSide: Int = 1024) -> RgbImage? {
    let scale = min(1.0, Double(maxSide) / Double(max(image.width, image.height)))
    let w = max(1, Int(Double(image.width) * scale)), h = max(1, Int(Double(image.height) * scale))
    var pixels = [UInt32](repeating: 0, count: w * h)
    let drawn: Bool = pixels.withUnsafeMutableBytes { raw in
        guard let ctx = CGContext(data: raw.baseAddress, width: w, height: h, bitsPerComponent: 8, bytesPerRow: w * 4,
                                  space: CGColorSpaceCreateDeviceRGB(),
                                  bitmapInfo: CGImageAlphaInfo.noneSkipFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue)
        else { return false }
        ctx.interpolationQuality = .high
        ctx.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
        return true
    }
    return drawn ? RgbImage(w, h, pixels, .ARGB) : nil
}

/// The kit's 0xAARRGGBB overlay pixels -> a CGImage (little-endian BGRA in memory).
func cgImage(_ pixels: [UInt32], _ width: Int, _ height: Int) -> CGImage? {
    let data = pixels.withUnsafeBytes { Data($0) } as CFData
    guard let provider = CGDataProvider(data: data) else { return nil }
    return CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: width * 4,
                   space: CGColorSpaceCreateDeviceRGB(),
                   bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue),
                   provider: provider, decode: nil, shouldInterpolate: true, intent: .defaultIntent)
}

/// Colours and links from the manifest's task_metadata (empty where the task has none).
struct OverlayMeta {
    let palette: [[Int]], skeleton: [[Int]], linkColors: [[Int]], keypointColors: [[Int]]

    init(_ manifest: Manifest) throws {
        palette = try metadataRows(manifest, "palette_rgb")
        skeleton = try metadataRows(manifest, "skeleton")
        linkColors = try metadataRows(manifest, "skeleton_colors")
        keypointColors = try metadataRows(manifest, "keypoint_colors")
    }
}

/// The task's overlay at the frame's size.
func overlay(_ frame: RgbImage, _ result: TaskResult, _ meta: OverlayMeta) throws -> CGImage? {
    let px: [UInt32]
    switch result {
    case let r as SegResult: px = try overlaySeg(frame, r.labels, meta.palette)
    case let r as PoseResult: px = try drawPose(frame, r, meta.skeleton, meta.linkColors, meta.keypointColors)
    case let r as NormalResult: px = normalToRgb(r.normals)
    case let r as PointmapResult: px = depthToRgb(r.pointmap)
    default: return nil
    }
    return cgImage(px, frame.width, frame.height)
}
