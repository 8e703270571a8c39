package io.sapiensedge.kit

import kotlin.math.max
import kotlin.math.roundToInt

/*
 * runtime/visualize.py in Kotlin: overlays rendered into an ARGB IntArray (what Bitmap.setPixels takes).
 * overlaySeg and normalToRgb give visualize.py's pixels exactly; drawPose and depthToRgb draw the same
 * things without Pillow's anti-aliasing rules.
 */

private fun argb(r: Int, g: Int, b: Int): Int = (0xFF shl 24) or (r shl 16) or (g shl 8) or b

/** Blend class colours into the image: (1 - alpha) * image + alpha * colour, float32, rounded (visualize.py overlay_seg). */
fun overlaySeg(image: RgbImage, labels: IntArray, palette: List<IntArray>, alpha: Float = 0.5f): IntArray {
    val u8 = toU8(image)
    if (labels.size != image.width * image.height) {
        throw InputShapeError("The label map has ${labels.size} pixels; the image ${image.width}x${image.height}. Decode the frame it came from.")
    }
    val keep = 1f - alpha
    return IntArray(labels.size) { i ->
        val col = palette[labels[i].coerceIn(0, palette.size - 1)]
        val ch = IntArray(3) { c -> Math.rint((keep * u8.data[3 * i + c] + alpha * col[c]).toDouble()).toInt().coerceIn(0, 255) }
        argb(ch[0], ch[1], ch[2])
    }
}

/** (H, W, 3) normals -> RGB uint8((n + 1) / 2 * 255), truncated after clipping (visualize.py normal_to_rgb). */
fun normalToRgb(normals: FloatArray): IntArray = IntArray(normals.size / 3) { i ->
    val ch = IntArray(3) { c ->
        val v = ((normals[3 * i + c] + 1f) / 2f * 255f).coerceIn(0f, 255f)
        if (v.isNaN()) 0 else v.toInt()
    }
    argb(ch[0], ch[1], ch[2])
}

// Google's Turbo colormap, public polynomial approximation (visualize.py _TURBO).
private val TURBO = arrayOf(
    doubleArrayOf(0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943),
    doubleArrayOf(0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604),
    doubleArrayOf(0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973),
)

/** Inverse-depth Turbo rendering of an (H, W, 3) pointmap, 1st-99th percentile span, background black (visualize.py depth_to_rgb). */
fun depthToRgb(pointmap: FloatArray): IntArray {
    val n = pointmap.size / 3
    val inv = DoubleArray(n) { 1.0 / pointmap[3 * it + 2].toDouble().let { z -> if (z.isNaN()) 250.0 else z.coerceIn(0.1, 250.0) } }
    val shown = BooleanArray(n) { val z = pointmap[3 * it + 2]; z.isFinite() && z > 0 }
    val values = inv.filterIndexed { i, _ -> shown[i] }.sorted()
    val out = IntArray(n) { argb(0, 0, 0) }
    if (values.isEmpty()) return out
    fun pct(p: Double): Double { // numpy's default (linear) percentile
        val pos = p / 100 * (values.size - 1)
        val lo = pos.toInt()
        val hi = minOf(lo + 1, values.size - 1)
        return values[lo] + (values[hi] - values[lo]) * (pos - lo)
    }
    val lo = pct(1.0)
    val span = max(pct(99.0) - lo, 1e-12)
    for (i in 0 until n) if (shown[i]) {
        val t = ((inv[i] - lo) / span).coerceIn(0.0, 1.0)
        val ch = IntArray(3) { c ->
            var v = 0.0
            var p = 1.0
            for (k in 0 until 6) { v += TURBO[c][k] * p; p *= t }
            (v.coerceIn(0.0, 1.0) * 255).toInt()
        }
        out[i] = argb(ch[0], ch[1], ch[2])
    }
    return out
}

/** Skeleton overlay onto a copy of `image`: links where both ends score > thr, then keypoint dots (visualize.py draw_pose). */
fun drawPose(image: RgbImage, result: PoseResult, skeleton: List<IntArray>, linkColors: List<IntArray>,
             keypointColors: List<IntArray>, thr: Float = POSE_SCORE_THRESHOLD): IntArray {
    val u8 = toU8(image)
    val w = image.width
    val h = image.height
    val out = IntArray(w * h) { argb(u8.data[3 * it], u8.data[3 * it + 1], u8.data[3 * it + 2]) }
    val size = max(w, h)
    val width = max(1, (size / 400.0).roundToInt())
    val radius = max(1.5, size / 300.0)
    fun dot(x: Double, y: Double, r: Double, color: Int) {
        for (yy in (y - r).toInt()..(y + r).toInt() + 1) for (xx in (x - r).toInt()..(x + r).toInt() + 1) {
            if (xx in 0 until w && yy in 0 until h && (xx - x) * (xx - x) + (yy - y) * (yy - y) <= r * r) out[yy * w + xx] = color
        }
    }
    val k = result.numKeypoints
    for (p in 0 until result.persons) {
        fun ok(i: Int) = i < k && result.scores[p * k + i] > thr &&
            result.keypoints[2 * (p * k + i)].isFinite() && result.keypoints[2 * (p * k + i) + 1].isFinite()
        fun xy(i: Int) = result.keypoints[2 * (p * k + i)].toDouble() to result.keypoints[2 * (p * k + i) + 1].toDouble()
        skeleton.forEachIndexed { li, link ->
            if (ok(link[0]) && ok(link[1])) {
                val (x0, y0) = xy(link[0])
                val (x1, y1) = xy(link[1])
                val c = linkColors.getOrElse(li) { intArrayOf(255, 255, 255) }
                val steps = max(1, max(kotlin.math.abs(x1 - x0), kotlin.math.abs(y1 - y0)).toInt())
                for (s in 0..steps) dot(x0 + (x1 - x0) * s / steps, y0 + (y1 - y0) * s / steps, width / 2.0, argb(c[0], c[1], c[2]))
            }
        }
        for (i in 0 until k) if (ok(i)) {
            val (x, y) = xy(i)
            val c = keypointColors.getOrElse(i) { intArrayOf(255, 255, 255) }
            dot(x, y, radius, argb(c[0], c[1], c[2]))
        }
    }
    return out
}
