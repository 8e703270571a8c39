import Foundation

/*
 * runtime/seg.py in Swift (Seg.kt): logits -> bilinear (torch, align_corners=False) to the image size -> argmax.
 * A pixel whose four source corners share their argmax keeps it (a convex blend cannot change it); only
 * boundary pixels blend logits, with the float32 operations of the full resize (x first, then y).
 */

/// argmax over the class axis of (C, h, w), first maximum wins (seg.py _argmax0).
public func argmax0(_ x: [Float], _ c: Int, _ hw: Int, _ offset: Int = 0) -> [Int] {
    var idx = [Int](repeating: 0, count: hw)
    for i in 0..<hw {
        var best = x[offset + i]
        var b = 0
        for k in 1..<max(1, c) {
            let v = x[offset + k * hw + i]
            if v > best { best = v; b = k }
        }
        idx[i] = b
    }
    return idx
}

/// seg.py seg_labels: (C, h, w) logits -> (outH * outW) class ids. Ties go to the lowest id, like torch.argmax.
public func segLabels(_ logits: [Float], _ c: Int, _ h: Int, _ w: Int, _ outH: Int, _ outW: Int, _ offset: Int = 0) -> [Int] {
    let ty = torchBilinearTaps(h, outH)
    let tx = torchBilinearTaps(w, outW)
    let src = argmax0(logits, c, h * w, offset)
    var labels = [Int](repeating: 0, count: outH * outW)
    let hw = h * w
    for y in 0..<outH {
        let r0 = ty.idx[2 * y] * w
        let r1 = ty.idx[2 * y + 1] * w
        let wy0 = ty.w[2 * y]
        let wy1 = ty.w[2 * y + 1]
        for x in 0..<outW {
            let c0 = tx.idx[2 * x]
            let c1 = tx.idx[2 * x + 1]
            let a = src[r0 + c0]
            if a == src[r0 + c1] && a == src[r1 + c0] && a == src[r1 + c1] { labels[y * outW + x] = a; continue }
            let wx0 = tx.w[2 * x]
            let wx1 = tx.w[2 * x + 1]
            var best: Float = 0
            var b = 0
            for k in 0..<c {
                let p = offset + k * hw
                let t0 = wx0 * logits[p + r0 + c0] + wx1 * logits[p + r0 + c1]
                let t1 = wx0 * logits[p + r1 + c0] + wx1 * logits[p + r1 + c1]
                let v = wy0 * t0 + wy1 * t1
                if k == 0 || v > best { best = v; b = k }
            }
            labels[y * outW + x] = b
        }
    }
    return labels
}

/// Decoded seg output (issue 22's contract): class ids at the model's resolution -> the image size by
/// nearest neighbour on pixel centres, src = floor((dst + 0.5) * in / out), clamped.
public func nearestLabels(_ labels: [Int], _ h: Int, _ w: Int, _ outH: Int, _ outW: Int) -> [Int] {
    let xs = (0..<outW).map { min(Int((Double($0) + 0.5) * Double(w) / Double(outW)), w - 1) }
    var out = [Int](repeating: 0, count: outH * outW)
    for y in 0..<outH {
        let sy = min(Int((Double(y) + 0.5) * Double(h) / Double(outH)), h - 1)
        for x in 0..<outW { out[y * outW + x] = labels[sy * w + xs[x]] }
    }
    return out
}

/// seg.py class_fractions: share of pixels per class id.
public func classFractions(_ labels: [Int], _ numClasses: Int) -> [Double] {
    var counts = [Int](repeating: 0, count: numClasses)
    for l in labels where l >= 0 && l < numClasses { counts[l] += 1 }
    return counts.map { Double($0) / Double(max(1, labels.count)) }
}
