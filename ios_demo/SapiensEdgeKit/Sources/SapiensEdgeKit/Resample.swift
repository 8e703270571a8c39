import Foundation

/*
 * runtime/resample.py in Swift (Resample.kt): separable resampling with OpenCV / PyTorch semantics, one pass per
 * axis described by taps (per output index a few source indices and weights). The float32/float64 operation
 * order follows the Python code, so results agree to the last bit (uint8 bilinear) or to +-1 at ties.
 */

/// Taps of one axis: output i = sum_k w[i*k+j] * src[idx[i*k+j]].
public struct Taps {
    public let nOut: Int
    public let k: Int
    public let idx: [Int]
    public let w: [Float]
}

/// An interleaved uint8 image (H, W, C) (resample.py's uint8 arrays).
public struct U8Image {
    public let height: Int
    public let width: Int
    public let channels: Int
    public var data: [UInt8]

    public init(_ height: Int, _ width: Int, _ channels: Int, _ data: [UInt8]? = nil) {
        self.height = height
        self.width = width
        self.channels = channels
        self.data = data ?? [UInt8](repeating: 0, count: height * width * channels)
    }
}

private let COEF_BITS = 11
private let COEF_SCALE = 1 << COEF_BITS
private let CUBIC_A: Float = -0.75

public enum Method { case LINEAR, CUBIC, AREA }

/// OpenCV interpolateCubic in float32, same operation order as resample.py's _cubic_weights.
func cubicWeights(_ fx: Float, _ out: inout [Float], _ at: Int) {
    let a = CUBIC_A
    let x1 = fx + 1
    let w0 = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a
    let w1 = ((a + 2) * fx - (a + 3)) * fx * fx + 1
    let r = 1 - fx
    let w2 = ((a + 2) * r - (a + 3)) * r * r + 1
    out[at] = w0; out[at + 1] = w1; out[at + 2] = w2; out[at + 3] = 1 - w0 - w1 - w2
}

private func clampI(_ v: Int, _ lo: Int, _ hi: Int) -> Int { v < lo ? lo : (v > hi ? hi : v) }

/// resample.py _cv_interp_taps: OpenCV resizeGeneric taps (linear, cubic or area-upscale).
func cvInterpTaps(_ nIn: Int, _ nOut: Int, cubic: Bool, areaMode: Bool, pinEdges: Bool) -> Taps {
    let invScale = Double(nOut) / Double(nIn)
    let scale = 1.0 / invScale
    let k = cubic ? 4 : 2
    var idx = [Int](repeating: 0, count: nOut * k)
    var w = [Float](repeating: 0, count: nOut * k)
    for d in 0..<nOut {
        var s: Int
        var f: Float
        if areaMode {
            s = Int((Double(d) * scale).rounded(.down))
            f = Float(Double(d + 1) - Double(s + 1) * invScale)
            f = f <= 0 ? 0 : f - f.rounded(.down)
        } else {
            let pos = Float((Double(d) + 0.5) * scale - 0.5)
            s = Int(pos.rounded(.down))
            f = pos - Float(s)
        }
        if cubic {
            cubicWeights(f, &w, d * k)
            for j in 0..<4 { idx[d * k + j] = clampI(s - 1 + j, 0, nIn - 1) }
        } else {
            if pinEdges && (s < 0 || s >= nIn - 1) {
                f = 0
                s = s < 0 ? 0 : nIn - 1
            }
            w[d * 2] = 1 - f; w[d * 2 + 1] = f
            idx[d * 2] = clampI(s, 0, nIn - 1); idx[d * 2 + 1] = clampI(s + 1, 0, nIn - 1)
        }
    }
    return Taps(nOut: nOut, k: k, idx: idx, w: w)
}

/// resample.py _cv_area_taps: OpenCV computeResizeAreaTab (box-overlap weights for downscaling).
func cvAreaTaps(_ nIn: Int, _ nOut: Int) -> Taps {
    let scale = 1.0 / (Double(nOut) / Double(nIn))
    var rows: [[(Int, Double)]] = []
    rows.reserveCapacity(nOut)
    for dx in 0..<nOut {
        let fsx1 = Double(dx) * scale
        let fsx2 = fsx1 + scale
        let cell = min(scale, Double(nIn) - fsx1)
        let sx2 = min(Int(fsx2.rounded(.down)), nIn - 1)
        let sx1 = min(Int(fsx1.rounded(.up)), sx2)
        var taps: [(Int, Double)] = []
        if Double(sx1) - fsx1 > 1e-3 { taps.append((sx1 - 1, (Double(sx1) - fsx1) / cell)) }
        for sx in sx1..<max(sx1, sx2) { taps.append((sx, 1.0 / cell)) }
        if fsx2 - Double(sx2) > 1e-3 { taps.append((sx2, min(min(fsx2 - Double(sx2), 1.0), cell) / cell)) }
        rows.append(taps)
    }
    let k = rows.map { $0.count }.max() ?? 0
    var idx = [Int](repeating: 0, count: nOut * k)
    var w = [Float](repeating: 0, count: nOut * k)
    for (i, taps) in rows.enumerated() {
        for (j, tap) in taps.enumerated() { idx[i * k + j] = tap.0; w[i * k + j] = Float(tap.1) }
    }
    return Taps(nOut: nOut, k: k, idx: idx, w: w)
}

/// resample.py torch_bilinear_taps: PyTorch upsample_bilinear2d (align_corners=False), float32 with FMA.
public func torchBilinearTaps(_ nIn: Int, _ nOut: Int) -> Taps {
    let scale = Float(nIn) / Float(nOut)
    var idx = [Int](repeating: 0, count: nOut * 2)
    var w = [Float](repeating: 0, count: nOut * 2)
    for d in 0..<nOut {
        let df = Float(d) + 0.5
        var src = Float(Double(scale) * Double(df) - 0.5)
        if src < 0 { src = 0 }
        let i0 = Int(src)
        let lam1 = min(max(src - Float(i0), 0), 1)
        idx[2 * d] = i0; idx[2 * d + 1] = min(i0 + 1, nIn - 1)
        w[2 * d] = 1 - lam1; w[2 * d + 1] = lam1
    }
    return Taps(nOut: nOut, k: 2, idx: idx, w: w)
}

/// resample.py apply_taps along the middle axis of an (outer, nIn, inner) float array, in float32:
/// out[o, i, j] = sum_k w[i, k] * src[o, idx[i, k], j], terms added in tap order.
public func applyTaps(_ src: [Float], _ outer: Int, _ nIn: Int, _ inner: Int, _ t: Taps) -> [Float] {
    var dst = [Float](repeating: 0, count: outer * t.nOut * inner)
    src.withUnsafeBufferPointer { s in
        dst.withUnsafeMutableBufferPointer { d in
            for o in 0..<outer {
                let sBase = o * nIn * inner
                let dBase = o * t.nOut * inner
                for i in 0..<t.nOut {
                    let d0 = dBase + i * inner
                    let i0 = sBase + t.idx[i * t.k] * inner
                    let w0 = t.w[i * t.k]
                    for j in 0..<inner { d[d0 + j] = s[i0 + j] * w0 }
                    for kk in 1..<max(1, t.k) {
                        let ik = sBase + t.idx[i * t.k + kk] * inner
                        let wk = t.w[i * t.k + kk]
                        for j in 0..<inner { d[d0 + j] += s[ik + j] * wk }
                    }
                }
            }
        }
    }
    return dst
}

/// The same in float64 (warp_scale_translate's passes), reading the source through `get(index)` so the first
/// pass can take the uint8 image's window in place (no float64 copy of a camera frame).
private func applyTapsD(_ outer: Int, _ nIn: Int, _ inner: Int, _ t: Taps, _ get: (Int) -> Double) -> [Double] {
    var dst = [Double](repeating: 0, count: outer * t.nOut * inner)
    for o in 0..<outer {
        for i in 0..<t.nOut {
            let d0 = (o * t.nOut + i) * inner
            for kk in 0..<t.k {
                let s0 = (o * nIn + t.idx[i * t.k + kk]) * inner
                let wk = Double(t.w[i * t.k + kk])
                if kk == 0 {
                    for j in 0..<inner { dst[d0 + j] = get(s0 + j) * wk }
                } else {
                    for j in 0..<inner { dst[d0 + j] += get(s0 + j) * wk }
                }
            }
        }
    }
    return dst
}

private func u8(_ v: Double) -> UInt8 { UInt8(min(max(v.rounded(.toNearestOrEven), 0), 255)) }

/// `cv2.resize` of a uint8 image (resample.py resize): bilinear bit-exact, cubic/area +-1 at ties.
public func resize(_ img: U8Image, _ outH: Int, _ outW: Int, _ method: Method) -> U8Image {
    precondition(outH > 0 && outW > 0, "output size must be positive, got \(outH)x\(outW)")
    let c = img.channels
    if img.height == outH && img.width == outW { return U8Image(outH, outW, c, img.data) }
    var out = U8Image(outH, outW, c)
    if method == .AREA && outH <= img.height && outW <= img.width {
        let tx = cvAreaTaps(img.width, outW)
        let ty = cvAreaTaps(img.height, outH)
        let f = applyTaps(applyTaps(toFloat(img.data), img.height, img.width, c, tx), 1, img.height, outW * c, ty)
        let half = img.width == 2 * outW && img.height == 2 * outH // OpenCV's 2x2 path rounds halves up
        for i in f.indices { out.data[i] = u8(half ? Double((f[i] + 0.5).rounded(.down)) : Double(f[i])) }
        return out
    }
    let cubic = method == .CUBIC
    let tx = cvInterpTaps(img.width, outW, cubic: cubic, areaMode: method == .AREA, pinEdges: true)
    let ty = cvInterpTaps(img.height, outH, cubic: cubic, areaMode: method == .AREA, pinEdges: false)
    if cubic {
        let f = applyTaps(applyTaps(toFloat(img.data), img.height, img.width, c, tx), 1, img.height, outW * c, ty)
        for i in f.indices { out.data[i] = u8(Double(f[i])) }
        return out
    }
    linearU8FixedPoint(img, tx, ty, &out)
    return out
}

private func toFloat(_ a: [UInt8]) -> [Float] { a.map { Float($0) } }

/// resample.py _linear_u8_fixed_point: OpenCV's uint8 bilinear with its 11-bit weights and SIMD truncations.
private func linearU8FixedPoint(_ img: U8Image, _ tx: Taps, _ ty: Taps, _ out: inout U8Image) {
    let c = img.channels
    let w = img.width
    let ow = out.width
    let ax = tx.w.map { Int(($0 * Float(COEF_SCALE)).rounded(.toNearestOrEven)) }
    let by = ty.w.map { Int(($0 * Float(COEF_SCALE)).rounded(.toNearestOrEven)) }
    var horiz = [Int](repeating: 0, count: img.height * ow * c)
    for y in 0..<img.height {
        for x in 0..<ow {
            for ch in 0..<c {
                let a = Int(img.data[(y * w + tx.idx[2 * x]) * c + ch]) * ax[2 * x]
                    + Int(img.data[(y * w + tx.idx[2 * x + 1]) * c + ch]) * ax[2 * x + 1]
                horiz[(y * ow + x) * c + ch] = a >> 4
            }
        }
    }
    for y in 0..<out.height {
        let r0 = ty.idx[2 * y] * ow * c
        let r1 = ty.idx[2 * y + 1] * ow * c
        let b0 = by[2 * y]
        let b1 = by[2 * y + 1]
        let o = y * ow * c
        for j in 0..<(ow * c) {
            let acc = ((horiz[r0 + j] * b0) >> 16) + ((horiz[r1 + j] * b1) >> 16)
            out.data[o + j] = UInt8(clampI((acc + 2) >> 2, 0, 255))
        }
    }
}

/// resample.py _warp_taps: inverse map src = (dst - offset) / scale; taps outside the source get weight 0.
private func warpTaps(_ nIn: Int, _ nOut: Int, _ scale: Double, _ offset: Double, _ cubic: Bool) -> Taps {
    let inv = 1.0 / scale
    let k = cubic ? 4 : 2
    var idx = [Int](repeating: 0, count: nOut * k)
    var w = [Float](repeating: 0, count: nOut * k)
    for d in 0..<nOut {
        let pos = Double(d) * inv - offset * inv
        let s = Int(pos.rounded(.down))
        let f = Float(pos - Double(s))
        if cubic { cubicWeights(f, &w, d * k) } else { w[d * 2] = 1 - f; w[d * 2 + 1] = f }
        for j in 0..<k {
            let src = s + j - (cubic ? 1 : 0)
            if src < 0 || src >= nIn { w[d * k + j] = 0 }
            idx[d * k + j] = clampI(src, 0, nIn - 1)
        }
    }
    return Taps(nOut: nOut, k: k, idx: idx, w: w)
}

/// [first, last + 1) source index with a non-zero weight (a 1-pixel window if none).
private func touched(_ t: Taps) -> (Int, Int) {
    var lo = Int.max
    var hi = -1
    for i in t.idx.indices where t.w[i] != 0 { lo = min(lo, t.idx[i]); hi = max(hi, t.idx[i]) }
    return hi < 0 ? (0, 1) : (lo, hi + 1)
}

/// `cv2.warpAffine` with M = [[sx, 0, ox], [0, sy, oy]], constant 0 border (resample.py warp_scale_translate).
public func warpScaleTranslate(_ img: U8Image, _ outH: Int, _ outW: Int, _ sx: Double, _ sy: Double, _ ox: Double,
                               _ oy: Double, _ method: Method) -> U8Image {
    precondition(sx != 0 && sy != 0, "warp scale must be non-zero")
    let cubic = method == .CUBIC
    let tx0 = warpTaps(img.width, outW, sx, ox, cubic)
    let ty0 = warpTaps(img.height, outH, sy, oy, cubic)
    let (r0, r1) = touched(ty0)
    let (c0, c1) = touched(tx0)
    let wh = r1 - r0
    let ww = c1 - c0
    let c = img.channels
    // Window element i (row y, column x, channel ch of the touched window) read in place from the image.
    let rowLen = ww * c
    let data = img.data
    let width = img.width
    func win(_ i: Int) -> Double { Double(data[((i / rowLen + r0) * width + c0) * c + i % rowLen]) }
    let tx = Taps(nOut: outW, k: tx0.k, idx: tx0.idx.map { clampI($0 - c0, 0, ww - 1) }, w: tx0.w)
    let ty = Taps(nOut: outH, k: ty0.k, idx: ty0.idx.map { clampI($0 - r0, 0, wh - 1) }, w: ty0.w)
    // The axis that shrinks the data most goes first, as in Python (float64 either way).
    let res: [Double]
    if outH * ww < wh * outW {
        let a = applyTapsD(1, wh, ww * c, ty, win)
        res = applyTapsD(outH, ww, c, tx) { a[$0] }
    } else {
        let a = applyTapsD(wh, ww, c, tx, win)
        res = applyTapsD(1, wh, outW * c, ty) { a[$0] }
    }
    var out = U8Image(outH, outW, c)
    for i in res.indices { out.data[i] = u8(res[i]) }
    return out
}

/// `F.interpolate(x[None], (outH, outW), mode='bilinear', align_corners=False)[0]` of a (C, h, w) float map
/// (resample.py bilinear_resize_float): x pass, then y pass, float32.
public func bilinearResizeFloat(_ chw: [Float], _ c: Int, _ h: Int, _ w: Int, _ outH: Int, _ outW: Int) -> [Float] {
    let part = w != outW ? applyTaps(chw, c * h, w, 1, torchBilinearTaps(w, outW)) : chw
    return applyTaps(part, c, h, outW, torchBilinearTaps(h, outH))
}
