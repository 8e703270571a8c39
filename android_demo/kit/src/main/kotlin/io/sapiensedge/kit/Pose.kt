package io.sapiensedge.kit

import kotlin.math.exp
import kotlin.math.ln
import kotlin.math.max
import kotlin.math.min

/*
 * runtime/pose.py in Kotlin: flip-test merge, UDP + DARK decoding (mmpose's UDPHeatmap), heatmap -> image.
 * The 11x11 Gaussian blur of DARK is evaluated on the 3x3 stencil around each peak only, plus the full
 * blurred maximum where clipping to [0.001, 50] can matter, as in Python.
 */

private const val BLUR_K = 11
private const val R = BLUR_K / 2
private const val EPS = 1.1920929e-7 // np.finfo(np.float32).eps

/** cv2.getGaussianKernel(11, 0) as float32 (pose.py _gaussian_kernel). */
private val G: FloatArray = run {
    val sigma = 0.3 * ((BLUR_K - 1) * 0.5 - 1) + 0.8
    val k = DoubleArray(BLUR_K) { val x = it - (BLUR_K - 1) / 2.0; exp(-(x * x) / (2 * sigma * sigma)) }
    val s = k.sum()
    FloatArray(BLUR_K) { (k[it] / s).toFloat() }
}

/**
 * pose.py merge_flip for one person: (P + flip_back(Pf)) / 2 of (K, h, w) maps, where flip_back mirrors the
 * width axis and permutes channels: out[k] = in[flip[k]].
 */
fun mergeFlip(heatmaps: FloatArray, flipped: FloatArray, k: Int, h: Int, w: Int, flipIndices: IntArray): FloatArray {
    val out = FloatArray(k * h * w)
    for (c in 0 until k) {
        val src = flipIndices[c] * h * w
        for (y in 0 until h) for (x in 0 until w) {
            val o = (c * h + y) * w + x
            out[o] = (heatmaps[o] + flipped[src + y * w + (w - 1 - x)]) * 0.5f
        }
    }
    return out
}

/** Blurred values (zero border) of map `m` (h, w, at offset `base`) on [y0, y0+bh) x [x0, x0+bw): pose.py _blur_boxes. */
private fun blurBox(hm: FloatArray, base: Int, h: Int, w: Int, y0: Int, x0: Int, bh: Int, bw: Int): FloatArray {
    val rows = bh + 2 * R
    val t = FloatArray(rows * bw)
    for (r in 0 until rows) {
        val y = y0 + r - R
        for (c in 0 until bw) {
            var acc = 0f
            for (i in 0 until BLUR_K) {
                val x = x0 + c + i - R
                val v = if (y in 0 until h && x in 0 until w) hm[base + y * w + x] else 0f
                acc += G[i] * v
            }
            t[r * bw + c] = acc
        }
    }
    val out = FloatArray(bh * bw)
    for (r in 0 until bh) for (c in 0 until bw) {
        var acc = 0f
        for (i in 0 until BLUR_K) acc += G[i] * t[(r + i) * bw + c]
        out[r * bw + c] = acc
    }
    return out
}

/** Decoded keypoints of one person: (x, y) in heatmap pixels and the unblurred peak score per keypoint. */
class Keypoints(val coords: FloatArray, val scores: FloatArray)

/**
 * pose.py decode_udp_dark: (K, h, w) heatmaps -> coords (K*2, heatmap pixels) and scores (K). Score <= 0 ->
 * (-1, -1), not refined. DARK-UDP on the blurred map rescaled to the original max, clipped to [0.001, 50], log'd.
 */
fun decodeUdpDark(hm: FloatArray, k: Int, h: Int, w: Int, offset: Int = 0): Keypoints {
    val coords = FloatArray(2 * k)
    val scores = FloatArray(k)
    val bh = min(3, h)
    val bw = min(3, w)
    for (kp in 0 until k) {
        val base = offset + kp * h * w
        var best = 0
        var score = hm[base]
        for (i in 1 until h * w) if (hm[base + i] > score) { score = hm[base + i]; best = i }
        scores[kp] = score
        val ys = best / w
        val xs = best % w
        if (!(score > 0f)) { coords[2 * kp] = -1f; coords[2 * kp + 1] = -1f; continue }
        coords[2 * kp] = xs.toFloat(); coords[2 * kp + 1] = ys.toFloat()
        val y0 = (ys - 1).coerceIn(0, h - bh)
        val x0 = (xs - 1).coerceIn(0, w - bw)
        val nb = blurBox(hm, base, h, w, y0, x0, bh, bw)
        var lower = nb[0]
        var lowest = nb[0]
        for (v in nb) { lower = max(lower, v); lowest = min(lowest, v) }
        // Rescaling only shifts the log map unless clipping kicks in: then the exact blurred maximum is needed.
        val bmax = if (lowest < 1e-3f || score > 50f) max(lower, blurBox(hm, base, h, w, 0, 0, h, w).max()) else lower
        if (!(bmax > 0f)) continue
        val factor = score / bmax
        fun at(dy: Int, dx: Int): Float {
            val r = (ys + dy).coerceIn(0, h - 1) - y0
            val c = (xs + dx).coerceIn(0, w - 1) - x0
            return ln((nb[r * bw + c] * factor).coerceIn(1e-3f, 50f).toDouble()).toFloat()
        }
        val i0 = at(0, 0); val ix1 = at(0, 1); val ix1m = at(0, -1); val iy1 = at(1, 0); val iy1m = at(-1, 0)
        val ix1y1 = at(1, 1); val ix1my1m = at(-1, -1)
        val dx = 0.5f * (ix1 - ix1m)
        val dy = 0.5f * (iy1 - iy1m)
        val dxx = ix1 - 2 * i0 + ix1m
        val dyy = iy1 - 2 * i0 + iy1m
        val dxy = 0.5f * (ix1y1 - ix1 - iy1 + i0 + i0 - ix1m - iy1m + ix1my1m)
        val a = dxx.toDouble() + EPS
        val b = dxy.toDouble()
        val d = dyy.toDouble() + EPS
        val det = a * d - b * b
        if (!det.isFinite() || det == 0.0) continue
        coords[2 * kp] -= ((d * dx - b * dy) / det).toFloat()
        coords[2 * kp + 1] -= ((-b * dx + a * dy) / det).toFloat()
    }
    return Keypoints(coords, scores)
}

/**
 * pose.py heatmap_to_image: heatmap pixels -> image pixels with the box's centre and scale (cs = cx, cy, sw, sh),
 * upstream's float32 order. Written into `out` (K*2) at `outAt`.
 */
fun heatmapToImage(coords: FloatArray, cs: FloatArray, csAt: Int, hmH: Int, hmW: Int, inH: Int, inW: Int,
                   out: FloatArray, outAt: Int) {
    val sizes = floatArrayOf(inW.toFloat(), inH.toFloat())
    val denom = floatArrayOf((hmW - 1).toFloat(), (hmH - 1).toFloat())
    for (i in 0 until coords.size / 2) for (a in 0 until 2) {
        val kpIn = coords[2 * i + a] / denom[a] * sizes[a]
        val s = cs[csAt + 2 + a]
        out[outAt + 2 * i + a] = kpIn / sizes[a] * s + cs[csAt + a] - 0.5f * s
    }
}
