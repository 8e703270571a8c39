package io.sapiensedge.kit

/*
 * runtime/seg.py in Kotlin: logits -> bilinear (torch, align_corners=False) to the image size -> argmax.
 * A pixel whose four source corners share their argmax keeps it (a convex blend cannot change it); only
 * boundary pixels blend logits, with the float32 operations of the full resize (x first, then y).
 */

/** argmax over the class axis of (C, h, w), first maximum wins (seg.py _argmax0). */
fun argmax0(x: FloatArray, c: Int, hw: Int, offset: Int = 0): IntArray {
    val idx = IntArray(hw)
    for (i in 0 until hw) {
        var best = x[offset + i]
        var b = 0
        for (k in 1 until c) {
            val v = x[offset + k * hw + i]
            if (v > best) { best = v; b = k }
        }
        idx[i] = b
    }
    return idx
}

/** seg.py seg_labels: (C, h, w) logits -> (outH * outW) class ids. Ties go to the lowest id, like torch.argmax. */
fun segLabels(logits: FloatArray, c: Int, h: Int, w: Int, outH: Int, outW: Int, offset: Int = 0): IntArray {
    val ty = torchBilinearTaps(h, outH)
    val tx = torchBilinearTaps(w, outW)
    val src = argmax0(logits, c, h * w, offset)
    val labels = IntArray(outH * outW)
    val hw = h * w
    for (y in 0 until outH) {
        val r0 = ty.idx[2 * y] * w
        val r1 = ty.idx[2 * y + 1] * w
        val wy0 = ty.w[2 * y]
        val wy1 = ty.w[2 * y + 1]
        for (x in 0 until outW) {
            val c0 = tx.idx[2 * x]
            val c1 = tx.idx[2 * x + 1]
            val a = src[r0 + c0]
            if (a == src[r0 + c1] && a == src[r1 + c0] && a == src[r1 + c1]) { labels[y * outW + x] = a; continue }
            val wx0 = tx.w[2 * x]
            val wx1 = tx.w[2 * x + 1]
            var best = 0f
            var b = 0
            for (k in 0 until c) {
                val p = offset + k * hw
                val t0 = wx0 * logits[p + r0 + c0] + wx1 * logits[p + r0 + c1]
                val t1 = wx0 * logits[p + r1 + c0] + wx1 * logits[p + r1 + c1]
                val v = wy0 * t0 + wy1 * t1
                if (k == 0 || v > best) { best = v; b = k }
            }
            labels[y * outW + x] = b
        }
    }
    return labels
}

/**
 * Decoded seg output (issue 22's contract): class ids at the model's resolution -> the image size by
 * nearest neighbour on pixel centres, src = floor((dst + 0.5) * in / out), clamped.
 */
fun nearestLabels(labels: IntArray, h: Int, w: Int, outH: Int, outW: Int): IntArray {
    val xs = IntArray(outW) { minOf(((it + 0.5) * w / outW).toInt(), w - 1) }
    val out = IntArray(outH * outW)
    for (y in 0 until outH) {
        val sy = minOf(((y + 0.5) * h / outH).toInt(), h - 1)
        for (x in 0 until outW) out[y * outW + x] = labels[sy * w + xs[x]]
    }
    return out
}

/** seg.py class_fractions: share of pixels per class id. */
fun classFractions(labels: IntArray, numClasses: Int): DoubleArray {
    val counts = LongArray(numClasses)
    for (l in labels) if (l in 0 until numClasses) counts[l]++
    return DoubleArray(numClasses) { counts[it].toDouble() / maxOf(1, labels.size) }
}
