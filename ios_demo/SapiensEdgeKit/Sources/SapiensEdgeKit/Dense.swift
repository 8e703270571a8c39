import Foundation

/* runtime/dense.py, normal.py and pointmap.py in Swift (Dense.kt): pad cropping, resizing to (H, W, 3), unit
 * normals, metric pointmaps. */

/// A (C, h, w) float map.
public struct Chw {
    public let c: Int
    public let h: Int
    public let w: Int
    public var data: [Float]

    public init(_ c: Int, _ h: Int, _ w: Int, _ data: [Float]? = nil) {
        self.c = c
        self.h = h
        self.w = w
        self.data = data ?? [Float](repeating: 0, count: c * h * w)
    }
}

/// dense.py crop_pad: remove the centred padding (left, right, top, bottom).
public func cropPad(_ m: Chw, _ pad: [Int]) -> Chw {
    let (l, r, t, b) = (pad[0], pad[1], pad[2], pad[3])
    precondition(l + r < m.w && t + b < m.h && min(l, r, t, b) >= 0, "padding \(pad) does not fit a \(m.h)x\(m.w) map")
    var out = Chw(m.c, m.h - t - b, m.w - l - r)
    for c in 0..<m.c {
        for y in 0..<out.h {
            let from = (c * m.h + y + t) * m.w + l
            let to = (c * out.h + y) * out.w
            out.data.replaceSubrange(to..<(to + out.w), with: m.data[from..<(from + out.w)])
        }
    }
    return out
}

/// dense.py resize_to_hwc: bilinear (torch) resize of (C, h, w) to an (H, W, C) float array.
public func resizeToHwc(_ m: Chw, _ outH: Int, _ outW: Int) -> [Float] {
    let chw = bilinearResizeFloat(m.data, m.c, m.h, m.w, outH, outW)
    let hw = outH * outW
    var out = [Float](repeating: 0, count: hw * m.c)
    for c in 0..<m.c {
        for i in 0..<hw { out[i * m.c + c] = chw[c * hw + i] }
    }
    return out
}

/// normal.py unit_normals: divide by the channel norm clamped to >= 1e-8 (float32).
public func unitNormals(_ m: Chw) -> Chw {
    let hw = m.h * m.w
    var out = Chw(m.c, m.h, m.w)
    for i in 0..<hw {
        var s: Float = 0
        for c in 0..<m.c { let v = m.data[c * hw + i]; s += v * v }
        let n = max(s.squareRoot(), 1e-8)
        for c in 0..<m.c { out.data[c * hw + i] = m.data[c * hw + i] / n }
    }
    return out
}

/// normal.py postprocess_normal: unit -> crop pad -> bilinear to the image -> (H, W, 3). `unit` false for decoded outputs.
public func postprocessNormal(_ raw: Chw, _ pad: [Int], _ outH: Int, _ outW: Int, unit: Bool = true) -> [Float] {
    resizeToHwc(cropPad(unit ? unitNormals(raw) : raw, pad), outH, outW)
}

private let BLUR_SIGMA: Float = 0.8
private let BLUR_PASSES = 4
public let CANONICAL_FOCAL_LENGTH = 768.0

/// torchvision's 3-tap Gaussian (pointmap.py _torchvision_kernel), float32.
private let K3: [Float] = {
    let pdf = (0..<3).map { i -> Float in
        let q = Float(i - 1) / BLUR_SIGMA
        return Float(exp(Double(-0.5 * (q * q))))
    }
    let s = pdf[0] + pdf[1] + pdf[2]
    return pdf.map { $0 / s }
}()

/// pointmap.py gaussian_blur3: 3x3 Gaussian, reflect padding (edge for 1-pixel axes), per channel.
public func gaussianBlur3(_ m: Chw) -> Chw {
    let reflect = min(m.h, m.w) > 1
    func at(_ i: Int, _ n: Int) -> Int {
        if i < 0 { return reflect ? 1 : 0 }
        if i >= n { return reflect ? n - 2 : n - 1 }
        return i
    }
    var t = [Float](repeating: 0, count: m.c * (m.h + 2) * m.w)
    for c in 0..<m.c {
        for y in -1...m.h {
            let row = (c * m.h + at(y, m.h)) * m.w
            for x in 0..<m.w {
                t[(c * (m.h + 2) + y + 1) * m.w + x] =
                    K3[0] * m.data[row + at(x - 1, m.w)] + K3[1] * m.data[row + x] + K3[2] * m.data[row + at(x + 1, m.w)]
            }
        }
    }
    var out = Chw(m.c, m.h, m.w)
    for c in 0..<m.c {
        for y in 0..<m.h {
            for x in 0..<m.w {
                let b = c * (m.h + 2) * m.w + x
                out.data[(c * m.h + y) * m.w + x] = K3[0] * t[b + y * m.w] + K3[1] * t[b + (y + 1) * m.w] + K3[2] * t[b + (y + 2) * m.w]
            }
        }
    }
    return out
}

/// pointmap.py focal_length: focal length in network-input pixels implied by the predicted scale.
public func focalLength(_ scale: Float) -> Double { CANONICAL_FOCAL_LENGTH / Double(scale) }

/// pointmap.py postprocess_pointmap: / scale -> crop pad -> (4x blur when upsampling) -> bilinear -> (H, W, 3) metres.
public func postprocessPointmap(_ raw: Chw, _ scale: Float, _ pad: [Int], _ outH: Int, _ outW: Int) -> [Float] {
    var x = cropPad(Chw(raw.c, raw.h, raw.w, raw.data.map { $0 / scale }), pad)
    if outH > x.h || outW > x.w {
        for _ in 0..<BLUR_PASSES { x = gaussianBlur3(x) }
    }
    return resizeToHwc(x, outH, outW)
}
