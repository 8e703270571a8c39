import Foundation

/* runtime/preprocess.py in Swift (Preprocess.kt): network inputs for every task, from packed 32-bit pixels. */

public let POSE_BOX_PADDING: Float = 1.25

/// How a pixel packs its channels: ARGB (0xAARRGGBB, Android's Bitmap ints) or RGBA (0xRRGGBBAA).
/// An iOS BGRA camera buffer read as little-endian UInt32 is ARGB.
public enum PixelFormat { case ARGB, RGBA }

/// A frame as packed pixels (row-major, `width * height` values); alpha is ignored.
public struct RgbImage {
    public let width: Int
    public let height: Int
    public let pixels: [UInt32]
    public let format: PixelFormat

    public init(_ width: Int, _ height: Int, _ pixels: [UInt32], _ format: PixelFormat = .ARGB) {
        self.width = width
        self.height = height
        self.pixels = pixels
        self.format = format
    }
}

/// Channel order of the model's input tensor, from the manifest's input layout.
public enum Layout { case NCHW, NHWC }

/// RgbImage -> uint8 RGB (H, W, 3), checking it is what it says (preprocess.py _check_image).
public func toU8(_ img: RgbImage) throws -> U8Image {
    if img.width <= 0 || img.height <= 0 {
        throw ImageError("The image is empty (\(img.width)x\(img.height)); pass a decoded frame with pixels "
            + "(e.g. a CVPixelBuffer or CGImage drawn into 32-bit BGRA).")
    }
    if img.pixels.count != img.width * img.height {
        throw ImageError("The image says \(img.width)x\(img.height) but holds \(img.pixels.count) pixels "
            + "(\(img.width * img.height) needed); pass the row stride-free pixel array of that size.")
    }
    var out = U8Image(img.height, img.width, 3)
    let rgba = img.format == .RGBA
    out.data.withUnsafeMutableBufferPointer { d in
        for i in img.pixels.indices {
            let p = img.pixels[i]
            let rgb = rgba ? p >> 8 : p
            d[3 * i] = UInt8((rgb >> 16) & 0xFF)
            d[3 * i + 1] = UInt8((rgb >> 8) & 0xFF)
            d[3 * i + 2] = UInt8(rgb & 0xFF)
        }
    }
    return out
}

/// A float buffer reused from frame to frame (what the engines read without a copy). Not thread-safe:
/// one per processor, used by one inference at a time.
public final class InputBuffer {
    public private(set) var buffer: UnsafeMutableBufferPointer<Float>

    public init() { buffer = UnsafeMutableBufferPointer<Float>(start: nil, count: 0) }

    deinit { buffer.deallocate() }

    /// A buffer of exactly `n` floats, reallocated only when it grows.
    public func acquire(_ n: Int) -> UnsafeMutableBufferPointer<Float> {
        if buffer.count < n {
            buffer.deallocate()
            buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
        }
        let view = UnsafeMutableBufferPointer(rebasing: buffer[0..<n])
        view.initialize(repeating: 0)
        return view
    }
}

/// (H, W, 3) uint8 RGB -> (x - mean) / std on the 0-255 scale in float32 (preprocess.py normalize), written
/// at item `item` of a (N, 3, H, W) or (N, H, W, 3) batch in `dst`.
public func normalize(_ img: U8Image, _ mean: [Float], _ std: [Float], _ dst: UnsafeMutableBufferPointer<Float>,
                      _ item: Int, _ layout: Layout) {
    let hw = img.height * img.width
    let base = item * 3 * hw
    img.data.withUnsafeBufferPointer { d in
        for i in 0..<hw {
            for c in 0..<3 {
                let v = (Float(d[3 * i + c]) - mean[c]) / std[c]
                dst[layout == .NCHW ? base + c * hw + i : base + 3 * i + c] = v
            }
        }
    }
}

/// preprocess.py check_input_hw: positive multiples of 16.
public func checkInputHw(_ h: Int, _ w: Int) throws {
    if h <= 0 || w <= 0 || h % 16 != 0 || w % 16 != 0 {
        throw InputShapeError("Invalid input size \(h)x\(w): height and width must be positive multiples of 16.")
    }
}

/// Box centre and padded, aspect-fixed size (preprocess.py box_to_center_scale), float32.
public func boxToCenterScale(_ box: [Float], _ at: Int, _ aspect: Float, _ padding: Float = POSE_BOX_PADDING) -> [Float] {
    let cx = (box[at + 2] + box[at]) * 0.5
    let cy = (box[at + 3] + box[at + 1]) * 0.5
    let w = (box[at + 2] - box[at]) * padding
    let h = (box[at + 3] - box[at + 1]) * padding
    return w > h * aspect ? [cx, cy, w, w / aspect] : [cx, cy, h * aspect, h]
}

/// preprocess.py udp_warp_params: (sx, sy, ox, oy) of x' = sx * (x - c_x + s_w / 2), float32 maths.
public func udpWarpParams(_ cs: [Float], _ inH: Int, _ inW: Int) -> [Float] {
    let sx = Float(inW - 1) / cs[2]
    let sy = Float(inH - 1) / cs[3]
    let ox = sx * (-0.5 * (cs[0] * 2) + 0.5 * cs[2])
    let oy = sy * (-0.5 * (cs[1] * 2) + 0.5 * cs[3])
    return [sx, sy, ox, oy]
}

/// preprocess.py _check_boxes: (N*4) x1, y1, x2, y2; nil/empty -> the whole image.
public func checkBoxes(_ boxes: [Float]?, _ imageH: Int, _ imageW: Int) throws -> [Float] {
    guard let boxes = boxes, !boxes.isEmpty else { return [0, 0, Float(imageW - 1), Float(imageH - 1)] }
    if boxes.count % 4 != 0 || boxes.contains(where: { !$0.isFinite }) {
        throw InputShapeError("Person boxes must be finite x1, y1, x2, y2 pixel quadruples; got \(boxes.count) numbers.")
    }
    for i in stride(from: 0, to: boxes.count, by: 4) {
        let w = boxes[i + 2] - boxes[i]
        let h = boxes[i + 3] - boxes[i + 1]
        if w < 0 || h < 0 || max(w, h) <= 0 {
            throw InputShapeError("Each person box needs x2 >= x1, y2 >= y1 and a non-zero size (format: x1, y1, x2, "
                + "y2 in pixels).")
        }
    }
    return boxes
}

/// preprocess.py preprocess_pose: one UDP-warped crop per box into `dst`; returns centres and scales (N*4).
public func preprocessPose(_ img: U8Image, _ boxes: [Float], _ inH: Int, _ inW: Int, _ mean: [Float], _ std: [Float],
                           _ dst: UnsafeMutableBufferPointer<Float>, _ layout: Layout) -> [Float] {
    let n = boxes.count / 4
    let aspect = Float(Double(inW) / Double(inH))
    var cs = [Float](repeating: 0, count: 4 * n)
    for i in 0..<n {
        let c = boxToCenterScale(boxes, 4 * i, aspect)
        cs.replaceSubrange((4 * i)..<(4 * i + 4), with: c)
        let p = udpWarpParams(c, inH, inW)
        let method: Method = min(p[0], p[1]) < 1 ? .LINEAR : .CUBIC
        let crop = warpScaleTranslate(img, inH, inW, Double(p[0]), Double(p[1]), Double(p[2]), Double(p[3]), method)
        normalize(crop, mean, std, dst, i, layout)
    }
    return cs
}

/// preprocess.py preprocess_seg: plain resize (area when the width shrinks, else cubic).
public func preprocessSeg(_ img: U8Image, _ inH: Int, _ inW: Int, _ mean: [Float], _ std: [Float],
                          _ dst: UnsafeMutableBufferPointer<Float>, _ layout: Layout) {
    let method: Method = inW < img.width ? .AREA : .CUBIC
    normalize(resize(img, inH, inW, method), mean, std, dst, 0, layout)
}

/// preprocess.py dense_resize_shape: aspect-preserving (h', w'), Python float maths and int() truncation.
public func denseResizeShape(_ imageH: Int, _ imageW: Int, _ inH: Int, _ inW: Int) -> (Int, Int) {
    let r = min(Double(inW) / Double(imageW), Double(inH) / Double(imageH))
    return (max(1, Int(Double(imageH) * r)), max(1, Int(Double(imageW) * r)))
}

/// preprocess.py preprocess_dense: bilinear aspect-preserving resize + centred zero pad; returns (l, r, t, b).
public func preprocessDense(_ img: U8Image, _ inH: Int, _ inW: Int, _ mean: [Float], _ std: [Float],
                            _ dst: UnsafeMutableBufferPointer<Float>, _ layout: Layout) -> [Int] {
    let (nh, nw) = denseResizeShape(img.height, img.width, inH, inW)
    let left = (inW - nw) / 2
    let top = (inH - nh) / 2
    var canvas = U8Image(inH, inW, 3)
    let small = resize(img, nh, nw, .LINEAR)
    for y in 0..<nh {
        let from = y * nw * 3
        let to = ((y + top) * inW + left) * 3
        canvas.data.replaceSubrange(to..<(to + nw * 3), with: small.data[from..<(from + nw * 3)])
    }
    normalize(canvas, mean, std, dst, 0, layout)
    return [left, inW - nw - left, top, inH - nh - top]
}
