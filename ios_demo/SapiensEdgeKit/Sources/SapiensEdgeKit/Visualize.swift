import Foundation

/*
 * runtime/visualize.py in Swift (Visualize.kt): overlays rendered into a pixel buffer of 0xAARRGGBB UInt32s (in
 * little-endian memory BGRA bytes: a CGImage with byteOrder32Little | noneSkipFirst, or a 32BGRA CVPixelBuffer).
 * overlaySeg and normalToRgb give visualize.py's pixels exactly; drawPose and depthToRgb draw the same
 * things without Pillow's anti-aliasing rules.
 */

private func argb(_ r: Int, _ g: Int, _ b: Int) -> UInt32 { 0xFF00_0000 | UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b) }

private func clampInt(_ v: Int, _ lo: Int, _ hi: Int) -> Int { v < lo ? lo : (v > hi ? hi : v) }

/// Blend class colours into the image: (1 - alpha) * image + alpha * colour, float32, rounded (visualize.py overlay_seg).
public func overlaySeg(_ image: RgbImage, _ labels: [Int], _ palette: [[Int]], _ alpha: Float = 0.5) throws -> [UInt32] {
    let u8 = try toU8(image)
    if labels.count != image.width * image.height {
        throw InputShapeError("The label map has \(labels.count) pixels; the image \(image.width)x\(image.height). "
            + "Decode the frame it came from.")
    }
    let keep = 1 - alpha
    var out = [UInt32](repeating: 0, count: labels.count)
    for i in labels.indices {
        let col = palette[clampInt(labels[i], 0, palette.count - 1)]
        var ch = [0, 0, 0]
        for c in 0..<3 {
            let v = keep * Float(u8.data[3 * i + c]) + alpha * Float(col[c])
            ch[c] = clampInt(Int(Double(v).rounded(.toNearestOrEven)), 0, 255)
        }
        out[i] = argb(ch[0], ch[1], ch[2])
    }
    return out
}

/// (H, W, 3) normals -> RGB uint8((n + 1) / 2 * 255), truncated after clipping (visualize.py normal_to_rgb).
public func normalToRgb(_ normals: [Float]) -> [UInt32] {
    (0..<(normals.count / 3)).map { i -> UInt32 in
        var ch = [0, 0, 0]
        for c in 0..<3 {
            let raw = (normals[3 * i + c] + 1) / 2 * 255
            let v: Float = raw < 0 ? 0 : (raw > 255 ? 255 : raw)
            ch[c] = v.isNaN ? 0 : Int(v)
        }
        return argb(ch[0], ch[1], ch[2])
    }
}

// Google's Turbo colormap, public polynomial approximation (visualize.py _TURBO).
private let TURBO: [[Double]] = [
    [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
    [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
    [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
]

/// Inverse-depth Turbo rendering of an (H, W, 3) pointmap, 1st-99th percentile span, background black (visualize.py depth_to_rgb).
public func depthToRgb(_ pointmap: [Float]) -> [UInt32] {
    let n = pointmap.count / 3
    let inv = (0..<n).map { i -> Double in
        let z = Double(pointmap[3 * i + 2])
        return 1.0 / (z.isNaN ? 250.0 : min(max(z, 0.1), 250.0))
    }
    let shown = (0..<n).map { i -> Bool in let z = pointmap[3 * i + 2]; return z.isFinite && z > 0 }
    let values = (0..<n).filter { shown[$0] }.map { inv[$0] }.sorted()
    var out = [UInt32](repeating: argb(0, 0, 0), count: n)
    if values.isEmpty { return out }
    func pct(_ p: Double) -> Double { // numpy's default (linear) percentile
        let pos = p / 100 * Double(values.count - 1)
        let lo = Int(pos)
        let hi = min(lo + 1, values.count - 1)
        return values[lo] + (values[hi] - values[lo]) * (pos - Double(lo))
    }
    let lo = pct(1.0)
    let span = max(pct(99.0) - lo, 1e-12)
    for i in 0..<n where shown[i] {
        let t = min(max((inv[i] - lo) / span, 0.0), 1.0)
        var ch = [0, 0, 0]
        for c in 0..<3 {
            var v = 0.0
            var p = 1.0
            for k in 0..<6 { v += TURBO[c][k] * p; p *= t }
            ch[c] = Int(min(max(v, 0.0), 1.0) * 255)
        }
        out[i] = argb(ch[0], ch[1], ch[2])
    }
    return out
}

/// Skeleton overlay onto a copy of `image`: links where both ends score > thr, then keypoint dots (visualize.py draw_pose).
public func drawPose(_ image: RgbImage, _ result: PoseResult, _ skeleton: [[Int]], _ linkColors: [[Int]],
                     _ keypointColors: [[Int]], _ thr: Float = POSE_SCORE_THRESHOLD) throws -> [UInt32] {
    let u8 = try toU8(image)
    let w = image.width
    let h = image.height
    var out = (0..<(w * h)).map { argb(Int(u8.data[3 * $0]), Int(u8.data[3 * $0 + 1]), Int(u8.data[3 * $0 + 2])) }
    let size = max(w, h)
    let width = max(1, Int((Double(size) / 400.0).rounded()))
    let radius = max(1.5, Double(size) / 300.0)
    func dot(_ x: Double, _ y: Double, _ r: Double, _ color: UInt32) {
        let y0 = truncInt(y - r), y1 = truncInt(y + r) + 1
        let x0 = truncInt(x - r), x1 = truncInt(x + r) + 1
        if y1 < y0 || x1 < x0 { return }
        for yy in y0...y1 {
            for xx in x0...x1 {
                let dx = Double(xx) - x, dy = Double(yy) - y
                if xx >= 0 && xx < w && yy >= 0 && yy < h && dx * dx + dy * dy <= r * r { out[yy * w + xx] = color }
            }
        }
    }
    let k = result.numKeypoints
    let white = [255, 255, 255]
    for p in 0..<result.persons {
        func ok(_ i: Int) -> Bool {
            i < k && result.scores[p * k + i] > thr
                && result.keypoints[2 * (p * k + i)].isFinite && result.keypoints[2 * (p * k + i) + 1].isFinite
        }
        func xy(_ i: Int) -> (Double, Double) {
            (Double(result.keypoints[2 * (p * k + i)]), Double(result.keypoints[2 * (p * k + i) + 1]))
        }
        for (li, link) in skeleton.enumerated() where ok(link[0]) && ok(link[1]) {
            let (x0, y0) = xy(link[0])
            let (x1, y1) = xy(link[1])
            let c = li < linkColors.count ? linkColors[li] : white
            let steps = max(1, truncInt(max(abs(x1 - x0), abs(y1 - y0))))
            for s in 0...steps {
                dot(x0 + (x1 - x0) * Double(s) / Double(steps), y0 + (y1 - y0) * Double(s) / Double(steps),
                    Double(width) / 2.0, argb(c[0], c[1], c[2]))
            }
        }
        for i in 0..<k where ok(i) {
            let (x, y) = xy(i)
            let c = i < keypointColors.count ? keypointColors[i] : white
            dot(x, y, radius, argb(c[0], c[1], c[2]))
        }
    }
    return out
}
