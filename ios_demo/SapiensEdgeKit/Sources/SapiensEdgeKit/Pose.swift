import Foundation

/*
 * runtime/pose.py in Swift (Pose.kt): flip-test merge, UDP + DARK decoding (mmpose's UDPHeatmap), heatmap -> image.
 * The 11x11 Gaussian blur of DARK is evaluated on the 3x3 stencil around each peak only, plus the full
 * blurred maximum where clipping to [0.001, 50] can matter, as in Python.
 */

private let BLUR_K = 11
private let R = BLUR_K / 2
private let EPS = 1.1920929e-7 // np.finfo(np.float32).eps

/// cv2.getGaussianKernel(11, 0) as float32 (pose.py _gaussian_kernel).
private let G: [Float] = {
    let sigma = 0.3 * (Double(BLUR_K - 1) * 0.5 - 1) + 0.8
    let k = (0..<BLUR_K).map { i -> Double in
        let x = Double(i) - Double(BLUR_K - 1) / 2.0
        return exp(-(x * x) / (2 * sigma * sigma))
    }
    let s = k.reduce(0, +)
    return k.map { Float($0 / s) }
}()

/// Kotlin's coerceIn for floats (NaN passes through, as there).
private func coerce(_ v: Float, _ lo: Float, _ hi: Float) -> Float { v < lo ? lo : (v > hi ? hi : v) }

/// pose.py merge_flip for one person: (P + flip_back(Pf)) / 2 of (K, h, w) maps, where flip_back mirrors the
/// width axis and permutes channels: out[k] = in[flip[k]].
public func mergeFlip(_ heatmaps: [Float], _ flipped: [Float], _ k: Int, _ h: Int, _ w: Int, _ flipIndices: [Int]) -> [Float] {
    var out = [Float](repeating: 0, count: k * h * w)
    for c in 0..<k {
        let src = flipIndices[c] * h * w
        for y in 0..<h {
            for x in 0..<w {
                let o = (c * h + y) * w + x
                out[o] = (heatmaps[o] + flipped[src + y * w + (w - 1 - x)]) * 0.5
            }
        }
    }
    return out
}

/// Blurred values (zero border) of the (h, w) map at `base` on [y0, y0+bh) x [x0, x0+bw): pose.py _blur_boxes.
private func blurBox(_ hm: [Float], _ base: Int, _ h: Int, _ w: Int, _ y0: Int, _ x0: Int, _ bh: Int, _ bw: Int) -> [Float] {
    let rows = bh + 2 * R
    var t = [Float](repeating: 0, count: rows * bw)
    for r in 0..<rows {
        let y = y0 + r - R
        for c in 0..<bw {
            var acc: Float = 0
            for i in 0..<BLUR_K {
                let x = x0 + c + i - R
                let v: Float = (y >= 0 && y < h && x >= 0 && x < w) ? hm[base + y * w + x] : 0
                acc += G[i] * v
            }
            t[r * bw + c] = acc
        }
    }
    var out = [Float](repeating: 0, count: bh * bw)
    for r in 0..<bh {
        for c in 0..<bw {
            var acc: Float = 0
            for i in 0..<BLUR_K { acc += G[i] * t[(r + i) * bw + c] }
            out[r * bw + c] = acc
        }
    }
    return out
}

/// Decoded keypoints of one person: (x, y) in heatmap pixels and the unblurred peak score per keypoint.
public struct Keypoints {
    public let coords: [Float]
    public let scores: [Float]
}

/// pose.py decode_udp_dark: (K, h, w) heatmaps -> coords (K*2, heatmap pixels) and scores (K). Score <= 0 ->
/// (-1, -1), not refined. DARK-UDP on the blurred map rescaled to the original max, clipped to [0.001, 50], log'd.
public func decodeUdpDark(_ hm: [Float], _ k: Int, _ h: Int, _ w: Int, _ offset: Int = 0) -> Keypoints {
    var coords = [Float](repeating: 0, count: 2 * k)
    var scores = [Float](repeating: 0, count: k)
    let bh = min(3, h)
    let bw = min(3, w)
    for kp in 0..<k {
        let base = offset + kp * h * w
        var best = 0
        var score = hm[base]
        for i in 1..<max(1, h * w) where hm[base + i] > score { score = hm[base + i]; best = i }
        scores[kp] = score
        let ys = best / w
        let xs = best % w
        if !(score > 0) { coords[2 * kp] = -1; coords[2 * kp + 1] = -1; continue }
        coords[2 * kp] = Float(xs); coords[2 * kp + 1] = Float(ys)
        let y0 = min(max(ys - 1, 0), h - bh)
        let x0 = min(max(xs - 1, 0), w - bw)
        let nb = blurBox(hm, base, h, w, y0, x0, bh, bw)
        var lower = nb[0]
        var lowest = nb[0]
        for v in nb { lower = max(lower, v); lowest = min(lowest, v) }
        // Rescaling only shifts the log map unless clipping kicks in: then the exact blurred maximum is needed.
        let bmax = (lowest < 1e-3 || score > 50) ? max(lower, blurBox(hm, base, h, w, 0, 0, h, w).max()!) : lower
        if !(bmax > 0) { continue }
        let factor = score / bmax
        func at(_ dy: Int, _ dx: Int) -> Float {
            let r = min(max(ys + dy, 0), h - 1) - y0
            let c = min(max(xs + dx, 0), w - 1) - x0
            return Float(log(Double(coerce(nb[r * bw + c] * factor, 1e-3, 50))))
        }
        let i0 = at(0, 0), ix1 = at(0, 1), ix1m = at(0, -1), iy1 = at(1, 0), iy1m = at(-1, 0)
        let ix1y1 = at(1, 1), ix1my1m = at(-1, -1)
        let dx = 0.5 * (ix1 - ix1m)
        let dy = 0.5 * (iy1 - iy1m)
        let dxx = ix1 - 2 * i0 + ix1m
        let dyy = iy1 - 2 * i0 + iy1m
        let dxy = 0.5 * (ix1y1 - ix1 - iy1 + i0 + i0 - ix1m - iy1m + ix1my1m)
        let a = Double(dxx) + EPS
        let b = Double(dxy)
        let d = Double(dyy) + EPS
        let det = a * d - b * b
        if !det.isFinite || det == 0 { continue }
        coords[2 * kp] -= Float((d * Double(dx) - b * Double(dy)) / det)
        coords[2 * kp + 1] -= Float((-b * Double(dx) + a * Double(dy)) / det)
    }
    return Keypoints(coords: coords, scores: scores)
}

/// pose.py heatmap_to_image: heatmap pixels -> image pixels with the box's centre and scale (cs = cx, cy, sw, sh),
/// upstream's float32 order. Written into `out` (K*2) at `outAt`.
public func heatmapToImage(_ coords: [Float], _ cs: [Float], _ csAt: Int, _ hmH: Int, _ hmW: Int, _ inH: Int, _ inW: Int,
                           _ out: inout [Float], _ outAt: Int) {
    let sizes: [Float] = [Float(inW), Float(inH)]
    let denom: [Float] = [Float(hmW - 1), Float(hmH - 1)]
    for i in 0..<(coords.count / 2) {
        for a in 0..<2 {
            let kpIn = coords[2 * i + a] / denom[a] * sizes[a]
            let s = cs[csAt + 2 + a]
            out[outAt + 2 * i + a] = kpIn / sizes[a] * s + cs[csAt + a] - 0.5 * s
        }
    }
}
