package io.sapiensedge.kit

import kotlin.math.exp
import kotlin.math.sqrt

/* runtime/dense.py, normal.py and pointmap.py in Kotlin: pad cropping, resizing to (H, W, 3), unit normals, metric pointmaps. */

/** A (C, h, w) float map. */
class Chw(val c: Int, val h: Int, val w: Int, val data: FloatArray = FloatArray(c * h * w))

/** dense.py crop_pad: remove the centred padding (left, right, top, bottom). */
fun cropPad(m: Chw, pad: IntArray): Chw {
    val (l, r, t, b) = pad.toList()
    require(l + r < m.w && t + b < m.h && minOf(l, r, t, b) >= 0) { "padding ${pad.toList()} does not fit a ${m.h}x${m.w} map" }
    val out = Chw(m.c, m.h - t - b, m.w - l - r)
    for (c in 0 until m.c) for (y in 0 until out.h) {
        System.arraycopy(m.data, (c * m.h + y + t) * m.w + l, out.data, (c * out.h + y) * out.w, out.w)
    }
    return out
}

/** dense.py resize_to_hwc: bilinear (torch) resize of (C, h, w) to an (H, W, C) float array. */
fun resizeToHwc(m: Chw, outH: Int, outW: Int): FloatArray {
    val chw = bilinearResizeFloat(m.data, m.c, m.h, m.w, outH, outW)
    val hw = outH * outW
    val out = FloatArray(hw * m.c)
    for (c in 0 until m.c) for (i in 0 until hw) out[i * m.c + c] = chw[c * hw + i]
    return out
}

/** normal.py unit_normals: divide by the channel norm clamped to >= 1e-8 (float32). */
fun unitNormals(m: Chw): Chw {
    val hw = m.h * m.w
    val out = Chw(m.c, m.h, m.w)
    for (i in 0 until hw) {
        var s = 0f
        for (c in 0 until m.c) { val v = m.data[c * hw + i]; s += v * v }
        val n = maxOf(sqrt(s), 1e-8f)
        for (c in 0 until m.c) out.data[c * hw + i] = m.data[c * hw + i] / n
    }
    return out
}

/** normal.py postprocess_normal: unit -> crop pad -> bilinear to the image -> (H, W, 3). `unit` false for decoded outputs. */
fun postprocessNormal(raw: Chw, pad: IntArray, outH: Int, outW: Int, unit: Boolean = true): FloatArray =
    resizeToHwc(cropPad(if (unit) unitNormals(raw) else raw, pad), outH, outW)

private const val BLUR_SIGMA = 0.8f
private const val BLUR_PASSES = 4
const val CANONICAL_FOCAL_LENGTH = 768.0

/** torchvision's 3-tap Gaussian (pointmap.py _torchvision_kernel), float32. */
private val K3: FloatArray = run {
    val pdf = FloatArray(3) { val q = (it - 1).toFloat() / BLUR_SIGMA; exp((-0.5f * (q * q)).toDouble()).toFloat() }
    val s = pdf[0] + pdf[1] + pdf[2]
    FloatArray(3) { pdf[it] / s }
}

/** pointmap.py gaussian_blur3: 3x3 Gaussian, reflect padding (edge for 1-pixel axes), per channel. */
fun gaussianBlur3(m: Chw): Chw {
    val reflect = minOf(m.h, m.w) > 1
    fun at(i: Int, n: Int): Int = when {
        i < 0 -> if (reflect) 1 else 0
        i >= n -> if (reflect) n - 2 else n - 1
        else -> i
    }
    val t = FloatArray(m.c * (m.h + 2) * m.w)
    for (c in 0 until m.c) for (y in -1..m.h) for (x in 0 until m.w) {
        val row = (c * m.h + at(y, m.h)) * m.w
        t[(c * (m.h + 2) + y + 1) * m.w + x] =
            K3[0] * m.data[row + at(x - 1, m.w)] + K3[1] * m.data[row + x] + K3[2] * m.data[row + at(x + 1, m.w)]
    }
    val out = Chw(m.c, m.h, m.w)
    for (c in 0 until m.c) for (y in 0 until m.h) for (x in 0 until m.w) {
        val b = c * (m.h + 2) * m.w + x
        out.data[(c * m.h + y) * m.w + x] = K3[0] * t[b + y * m.w] + K3[1] * t[b + (y + 1) * m.w] + K3[2] * t[b + (y + 2) * m.w]
    }
    return out
}

/** pointmap.py focal_length: focal length in network-input pixels implied by the predicted scale. */
fun focalLength(scale: Float): Double = CANONICAL_FOCAL_LENGTH / scale.toDouble()

/** pointmap.py postprocess_pointmap: / scale -> crop pad -> (4x blur when upsampling) -> bilinear -> (H, W, 3) metres. */
fun postprocessPointmap(raw: Chw, scale: Float, pad: IntArray, outH: Int, outW: Int): FloatArray {
    var x = cropPad(Chw(raw.c, raw.h, raw.w, FloatArray(raw.data.size) { raw.data[it] / scale }), pad)
    if (outH > x.h || outW > x.w) repeat(BLUR_PASSES) { x = gaussianBlur3(x) }
    return resizeToHwc(x, outH, outW)
}
