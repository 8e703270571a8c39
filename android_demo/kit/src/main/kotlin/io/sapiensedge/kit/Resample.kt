package io.sapiensedge.kit

import kotlin.math.ceil
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min

/*
 * runtime/resample.py in Kotlin: separable resampling with OpenCV / PyTorch semantics, one pass per axis
 * described by taps (per output index a few source indices and weights). The float32/float64 operation
 * order follows the Python code, so results agree to the last bit (uint8 bilinear) or to +-1 at ties.
 */

/** Taps of one axis: output i = sum_k w[i*k+j] * src[idx[i*k+j]]. */
class Taps(val nOut: Int, val k: Int, val idx: IntArray, val w: FloatArray)

/** An interleaved uint8 image (H, W, C) with values 0..255 in an IntArray (resample.py's uint8 arrays). */
class U8Image(val height: Int, val width: Int, val channels: Int, val data: IntArray = IntArray(height * width * channels))

private const val COEF_BITS = 11
private const val COEF_SCALE = 1 shl COEF_BITS
private const val CUBIC_A = -0.75f

enum class Method { LINEAR, CUBIC, AREA }

/** OpenCV interpolateCubic in float32, same operation order as resample.py's _cubic_weights. */
internal fun cubicWeights(fx: Float, out: FloatArray, at: Int) {
    val a = CUBIC_A
    val x1 = fx + 1f
    val w0 = ((a * x1 - 5f * a) * x1 + 8f * a) * x1 - 4f * a
    val w1 = ((a + 2f) * fx - (a + 3f)) * fx * fx + 1f
    val r = 1f - fx
    val w2 = ((a + 2f) * r - (a + 3f)) * r * r + 1f
    out[at] = w0; out[at + 1] = w1; out[at + 2] = w2; out[at + 3] = 1f - w0 - w1 - w2
}

private fun clampI(v: Int, lo: Int, hi: Int) = if (v < lo) lo else if (v > hi) hi else v

/** resample.py _cv_interp_taps: OpenCV resizeGeneric taps (linear, cubic or area-upscale). */
internal fun cvInterpTaps(nIn: Int, nOut: Int, cubic: Boolean, areaMode: Boolean, pinEdges: Boolean): Taps {
    val invScale = nOut.toDouble() / nIn
    val scale = 1.0 / invScale
    val k = if (cubic) 4 else 2
    val idx = IntArray(nOut * k)
    val w = FloatArray(nOut * k)
    for (d in 0 until nOut) {
        var s: Int
        var f: Float
        if (areaMode) {
            s = floor(d * scale).toInt()
            f = ((d + 1) - (s + 1) * invScale).toFloat()
            f = if (f <= 0f) 0f else f - floor(f)
        } else {
            val pos = ((d + 0.5) * scale - 0.5).toFloat()
            s = floor(pos).toInt()
            f = pos - s.toFloat()
        }
        if (cubic) {
            cubicWeights(f, w, d * k)
            for (j in 0 until 4) idx[d * k + j] = clampI(s - 1 + j, 0, nIn - 1)
        } else {
            if (pinEdges && (s < 0 || s >= nIn - 1)) {
                f = 0f
                s = if (s < 0) 0 else nIn - 1
            }
            w[d * 2] = 1f - f; w[d * 2 + 1] = f
            idx[d * 2] = clampI(s, 0, nIn - 1); idx[d * 2 + 1] = clampI(s + 1, 0, nIn - 1)
        }
    }
    return Taps(nOut, k, idx, w)
}

/** resample.py _cv_area_taps: OpenCV computeResizeAreaTab (box-overlap weights for downscaling). */
internal fun cvAreaTaps(nIn: Int, nOut: Int): Taps {
    val scale = 1.0 / (nOut.toDouble() / nIn)
    val rows = ArrayList<List<Pair<Int, Double>>>(nOut)
    for (dx in 0 until nOut) {
        val fsx1 = dx * scale
        val fsx2 = fsx1 + scale
        val cell = min(scale, nIn - fsx1)
        val sx2 = min(floor(fsx2).toInt(), nIn - 1)
        val sx1 = min(ceil(fsx1).toInt(), sx2)
        val taps = ArrayList<Pair<Int, Double>>()
        if (sx1 - fsx1 > 1e-3) taps.add(sx1 - 1 to (sx1 - fsx1) / cell)
        for (sx in sx1 until sx2) taps.add(sx to 1.0 / cell)
        if (fsx2 - sx2 > 1e-3) taps.add(sx2 to min(min(fsx2 - sx2, 1.0), cell) / cell)
        rows.add(taps)
    }
    val k = rows.maxOf { it.size }
    val idx = IntArray(nOut * k)
    val w = FloatArray(nOut * k)
    rows.forEachIndexed { i, taps -> taps.forEachIndexed { j, (sx, wt) -> idx[i * k + j] = sx; w[i * k + j] = wt.toFloat() } }
    return Taps(nOut, k, idx, w)
}

/** resample.py torch_bilinear_taps: PyTorch upsample_bilinear2d (align_corners=False), float32 with FMA. */
fun torchBilinearTaps(nIn: Int, nOut: Int): Taps {
    val scale = nIn.toFloat() / nOut.toFloat()
    val idx = IntArray(nOut * 2)
    val w = FloatArray(nOut * 2)
    for (d in 0 until nOut) {
        val df = d.toFloat() + 0.5f
        var src = (scale.toDouble() * df.toDouble() - 0.5).toFloat()
        if (src < 0f) src = 0f
        val i0 = src.toInt()
        val lam1 = (src - i0.toFloat()).coerceIn(0f, 1f)
        idx[2 * d] = i0; idx[2 * d + 1] = min(i0 + 1, nIn - 1)
        w[2 * d] = 1f - lam1; w[2 * d + 1] = lam1
    }
    return Taps(nOut, 2, idx, w)
}

/**
 * resample.py apply_taps along the middle axis of an (outer, nIn, inner) float array, in float32:
 * out[o, i, j] = sum_k w[i, k] * src[o, idx[i, k], j], terms added in tap order.
 */
fun applyTaps(src: FloatArray, outer: Int, nIn: Int, inner: Int, t: Taps, dst: FloatArray = FloatArray(outer * t.nOut * inner)): FloatArray {
    for (o in 0 until outer) {
        val sBase = o * nIn * inner
        val dBase = o * t.nOut * inner
        for (i in 0 until t.nOut) {
            val d0 = dBase + i * inner
            val i0 = sBase + t.idx[i * t.k] * inner
            val w0 = t.w[i * t.k]
            for (j in 0 until inner) dst[d0 + j] = src[i0 + j] * w0
            for (kk in 1 until t.k) {
                val ik = sBase + t.idx[i * t.k + kk] * inner
                val wk = t.w[i * t.k + kk]
                for (j in 0 until inner) dst[d0 + j] += src[ik + j] * wk
            }
        }
    }
    return dst
}

/**
 * The same in float64 (warp_scale_translate's passes), reading the source through `get(index)` so the first
 * pass can take the uint8 image's window in place (no float64 copy of a camera frame).
 */
private inline fun applyTapsD(outer: Int, nIn: Int, inner: Int, t: Taps, get: (Int) -> Double): DoubleArray {
    val dst = DoubleArray(outer * t.nOut * inner)
    for (o in 0 until outer) for (i in 0 until t.nOut) {
        val d0 = (o * t.nOut + i) * inner
        for (kk in 0 until t.k) {
            val s0 = (o * nIn + t.idx[i * t.k + kk]) * inner
            val wk = t.w[i * t.k + kk].toDouble()
            if (kk == 0) for (j in 0 until inner) dst[d0 + j] = get(s0 + j) * wk
            else for (j in 0 until inner) dst[d0 + j] += get(s0 + j) * wk
        }
    }
    return dst
}

private fun u8(v: Double): Int = Math.rint(v).coerceIn(0.0, 255.0).toInt()

/** `cv2.resize` of a uint8 image (resample.py resize): bilinear bit-exact, cubic/area +-1 at ties. */
fun resize(img: U8Image, outH: Int, outW: Int, method: Method): U8Image {
    require(outH > 0 && outW > 0) { "output size must be positive, got ${outH}x$outW" }
    val c = img.channels
    if (img.height == outH && img.width == outW) return U8Image(outH, outW, c, img.data.copyOf())
    val out = U8Image(outH, outW, c)
    if (method == Method.AREA && outH <= img.height && outW <= img.width) {
        val tx = cvAreaTaps(img.width, outW)
        val ty = cvAreaTaps(img.height, outH)
        val f = applyTaps(applyTaps(toFloat(img.data), img.height, img.width, c, tx), 1, img.height, outW * c, ty)
        val half = img.width == 2 * outW && img.height == 2 * outH // OpenCV's 2x2 path rounds halves up
        for (i in f.indices) out.data[i] = u8(if (half) floor(f[i] + 0.5f).toDouble() else f[i].toDouble())
        return out
    }
    val cubic = method == Method.CUBIC
    val tx = cvInterpTaps(img.width, outW, cubic, method == Method.AREA, pinEdges = true)
    val ty = cvInterpTaps(img.height, outH, cubic, method == Method.AREA, pinEdges = false)
    if (cubic) {
        val f = applyTaps(applyTaps(toFloat(img.data), img.height, img.width, c, tx), 1, img.height, outW * c, ty)
        for (i in f.indices) out.data[i] = u8(f[i].toDouble())
        return out
    }
    linearU8FixedPoint(img, tx, ty, out)
    return out
}

private fun toFloat(a: IntArray) = FloatArray(a.size) { a[it].toFloat() }

/** resample.py _linear_u8_fixed_point: OpenCV's uint8 bilinear with its 11-bit weights and SIMD truncations. */
private fun linearU8FixedPoint(img: U8Image, tx: Taps, ty: Taps, out: U8Image) {
    val c = img.channels
    val w = img.width
    val ow = out.width
    val ax = IntArray(tx.w.size) { Math.rint((tx.w[it] * COEF_SCALE.toFloat()).toDouble()).toInt() }
    val by = IntArray(ty.w.size) { Math.rint((ty.w[it] * COEF_SCALE.toFloat()).toDouble()).toInt() }
    val horiz = IntArray(img.height * ow * c)
    for (y in 0 until img.height) for (x in 0 until ow) for (ch in 0 until c) {
        val a = img.data[(y * w + tx.idx[2 * x]) * c + ch] * ax[2 * x] + img.data[(y * w + tx.idx[2 * x + 1]) * c + ch] * ax[2 * x + 1]
        horiz[(y * ow + x) * c + ch] = a shr 4
    }
    for (y in 0 until out.height) {
        val r0 = ty.idx[2 * y] * ow * c
        val r1 = ty.idx[2 * y + 1] * ow * c
        val b0 = by[2 * y]
        val b1 = by[2 * y + 1]
        val o = y * ow * c
        for (j in 0 until ow * c) {
            val acc = ((horiz[r0 + j] * b0) shr 16) + ((horiz[r1 + j] * b1) shr 16)
            out.data[o + j] = clampI((acc + 2) shr 2, 0, 255)
        }
    }
}

/** resample.py _warp_taps: inverse map src = (dst - offset) / scale; taps outside the source get weight 0. */
private fun warpTaps(nIn: Int, nOut: Int, scale: Double, offset: Double, cubic: Boolean): Taps {
    val inv = 1.0 / scale
    val k = if (cubic) 4 else 2
    val idx = IntArray(nOut * k)
    val w = FloatArray(nOut * k)
    for (d in 0 until nOut) {
        val pos = d * inv - offset * inv
        val s = floor(pos).toInt()
        val f = (pos - s).toFloat()
        if (cubic) cubicWeights(f, w, d * k) else { w[d * 2] = 1f - f; w[d * 2 + 1] = f }
        for (j in 0 until k) {
            val src = s + j - (if (cubic) 1 else 0)
            if (src < 0 || src >= nIn) w[d * k + j] = 0f
            idx[d * k + j] = clampI(src, 0, nIn - 1)
        }
    }
    return Taps(nOut, k, idx, w)
}

/** [first, last + 1) source index with a non-zero weight (a 1-pixel window if none). */
private fun touched(t: Taps): Pair<Int, Int> {
    var lo = Int.MAX_VALUE
    var hi = -1
    for (i in t.idx.indices) if (t.w[i] != 0f) { lo = min(lo, t.idx[i]); hi = max(hi, t.idx[i]) }
    return if (hi < 0) 0 to 1 else lo to hi + 1
}

/** `cv2.warpAffine` with M = [[sx, 0, ox], [0, sy, oy]], constant 0 border (resample.py warp_scale_translate). */
fun warpScaleTranslate(img: U8Image, outH: Int, outW: Int, sx: Double, sy: Double, ox: Double, oy: Double, method: Method): U8Image {
    require(sx != 0.0 && sy != 0.0) { "warp scale must be non-zero" }
    val cubic = method == Method.CUBIC
    val tx0 = warpTaps(img.width, outW, sx, ox, cubic)
    val ty0 = warpTaps(img.height, outH, sy, oy, cubic)
    val (r0, r1) = touched(ty0)
    val (c0, c1) = touched(tx0)
    val wh = r1 - r0
    val ww = c1 - c0
    val c = img.channels
    // Window element i (row y, column x, channel ch of the touched window) read in place from the image.
    val rowLen = ww * c
    val data = img.data
    fun win(i: Int): Double = data[((i / rowLen + r0) * img.width + c0) * c + i % rowLen].toDouble()
    val tx = Taps(outW, tx0.k, IntArray(tx0.idx.size) { clampI(tx0.idx[it] - c0, 0, ww - 1) }, tx0.w)
    val ty = Taps(outH, ty0.k, IntArray(ty0.idx.size) { clampI(ty0.idx[it] - r0, 0, wh - 1) }, ty0.w)
    // The axis that shrinks the data most goes first, as in Python (float64 either way).
    val res = if (outH.toLong() * ww < wh.toLong() * outW) {
        val a = applyTapsD(1, wh, ww * c, ty) { win(it) }
        applyTapsD(outH, ww, c, tx) { a[it] }
    } else {
        val a = applyTapsD(wh, ww, c, tx) { win(it) }
        applyTapsD(1, wh, outW * c, ty) { a[it] }
    }
    val out = U8Image(outH, outW, c)
    for (i in res.indices) out.data[i] = u8(res[i])
    return out
}

/**
 * `F.interpolate(x[None], (outH, outW), mode='bilinear', align_corners=False)[0]` of a (C, h, w) float map
 * (resample.py bilinear_resize_float): x pass, then y pass, float32.
 */
fun bilinearResizeFloat(chw: FloatArray, c: Int, h: Int, w: Int, outH: Int, outW: Int): FloatArray {
    val part = if (w != outW) applyTaps(chw, c * h, w, 1, torchBilinearTaps(w, outW)) else chw
    return applyTaps(part, c, h, outW, torchBilinearTaps(h, outH))
}
