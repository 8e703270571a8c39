package io.sapiensedge.kit

import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.FloatBuffer

/* runtime/preprocess.py in Kotlin: network inputs for every task, from ARGB/RGBA int pixels. */

const val POSE_BOX_PADDING = 1.25f

/** How a pixel int packs its channels: ARGB (Android Bitmap.getPixels, java.awt) or RGBA (0xRRGGBBAA). */
enum class PixelFormat { ARGB, RGBA }

/** A frame as packed pixels (row-major, `width * height` ints); alpha is ignored. */
class RgbImage(val width: Int, val height: Int, val pixels: IntArray, val format: PixelFormat = PixelFormat.ARGB)

/** Channel order of the model's input tensor, from the manifest's input layout. */
enum class Layout { NCHW, NHWC }

/** RgbImage -> uint8 RGB (H, W, 3), checking it is what it says (preprocess.py _check_image). */
fun toU8(img: RgbImage): U8Image {
    if (img.width <= 0 || img.height <= 0) {
        throw ImageError("The image is empty (${img.width}x${img.height}); pass a decoded frame with pixels " +
            "(e.g. Bitmap.getPixels or ImageProxy converted to ARGB).")
    }
    if (img.pixels.size != img.width * img.height) {
        throw ImageError("The image says ${img.width}x${img.height} but holds ${img.pixels.size} pixels " +
            "(${img.width * img.height} needed); pass the row stride-free pixel array of that size.")
    }
    val out = U8Image(img.height, img.width, 3)
    val d = out.data
    val rgba = img.format == PixelFormat.RGBA
    for (i in img.pixels.indices) {
        val p = img.pixels[i]
        val rgb = if (rgba) p ushr 8 else p
        d[3 * i] = (rgb shr 16) and 0xFF
        d[3 * i + 1] = (rgb shr 8) and 0xFF
        d[3 * i + 2] = rgb and 0xFF
    }
    return out
}

/** A direct float buffer reused from frame to frame (what ONNX Runtime and TFLite read without a copy). */
class InputBuffer {
    var buffer: FloatBuffer = FloatBuffer.allocate(0)
        private set

    /** A buffer of exactly `n` floats, reallocated only when it grows. */
    fun acquire(n: Int): FloatBuffer {
        if (buffer.capacity() < n) {
            buffer = ByteBuffer.allocateDirect(n * 4).order(ByteOrder.nativeOrder()).asFloatBuffer()
        }
        buffer.clear()
        buffer.limit(n)
        return buffer
    }
}

/**
 * (H, W, 3) uint8 RGB -> (x - mean) / std on the 0-255 scale in float32 (preprocess.py normalize), written
 * at item `item` of a (N, 3, H, W) or (N, H, W, 3) batch in `dst`.
 */
fun normalize(img: U8Image, mean: FloatArray, std: FloatArray, dst: FloatBuffer, item: Int, layout: Layout) {
    val hw = img.height * img.width
    val base = item * 3 * hw
    val d = img.data
    for (i in 0 until hw) for (c in 0 until 3) {
        val v = (d[3 * i + c].toFloat() - mean[c]) / std[c]
        dst.put(if (layout == Layout.NCHW) base + c * hw + i else base + 3 * i + c, v)
    }
}

/** preprocess.py check_input_hw: positive multiples of 16. */
fun checkInputHw(h: Int, w: Int) {
    if (h <= 0 || w <= 0 || h % 16 != 0 || w % 16 != 0) {
        throw InputShapeError("Invalid input size ${h}x$w: height and width must be positive multiples of 16.")
    }
}

/** Box centre and padded, aspect-fixed size (preprocess.py box_to_center_scale), float32. */
fun boxToCenterScale(box: FloatArray, at: Int, aspect: Float, padding: Float = POSE_BOX_PADDING): FloatArray {
    val cx = (box[at + 2] + box[at]) * 0.5f
    val cy = (box[at + 3] + box[at + 1]) * 0.5f
    val w = (box[at + 2] - box[at]) * padding
    val h = (box[at + 3] - box[at + 1]) * padding
    return if (w > h * aspect) floatArrayOf(cx, cy, w, w / aspect) else floatArrayOf(cx, cy, h * aspect, h)
}

/** preprocess.py udp_warp_params: (sx, sy, ox, oy) of x' = sx * (x - c_x + s_w / 2), float32 maths. */
fun udpWarpParams(cs: FloatArray, inH: Int, inW: Int): FloatArray {
    val sx = (inW - 1).toFloat() / cs[2]
    val sy = (inH - 1).toFloat() / cs[3]
    val ox = sx * (-0.5f * (cs[0] * 2f) + 0.5f * cs[2])
    val oy = sy * (-0.5f * (cs[1] * 2f) + 0.5f * cs[3])
    return floatArrayOf(sx, sy, ox, oy)
}

/** preprocess.py _check_boxes: (N*4) x1, y1, x2, y2; null/empty -> the whole image. */
fun checkBoxes(boxes: FloatArray?, imageH: Int, imageW: Int): FloatArray {
    if (boxes == null || boxes.isEmpty()) return floatArrayOf(0f, 0f, (imageW - 1).toFloat(), (imageH - 1).toFloat())
    if (boxes.size % 4 != 0 || boxes.any { !it.isFinite() }) {
        throw InputShapeError("Person boxes must be finite x1, y1, x2, y2 pixel quadruples; got ${boxes.size} numbers.")
    }
    for (i in boxes.indices step 4) {
        val w = boxes[i + 2] - boxes[i]
        val h = boxes[i + 3] - boxes[i + 1]
        if (w < 0 || h < 0 || maxOf(w, h) <= 0) {
            throw InputShapeError("Each person box needs x2 >= x1, y2 >= y1 and a non-zero size (format: x1, y1, x2, y2 in pixels).")
        }
    }
    return boxes
}

/** preprocess.py preprocess_pose: one UDP-warped crop per box into `dst`; returns centres and scales (N*4). */
fun preprocessPose(img: U8Image, boxes: FloatArray, inH: Int, inW: Int, mean: FloatArray, std: FloatArray,
                   dst: FloatBuffer, layout: Layout): FloatArray {
    val n = boxes.size / 4
    val aspect = (inW.toDouble() / inH).toFloat()
    val cs = FloatArray(4 * n)
    for (i in 0 until n) {
        val c = boxToCenterScale(boxes, 4 * i, aspect)
        c.copyInto(cs, 4 * i)
        val p = udpWarpParams(c, inH, inW)
        val method = if (minOf(p[0], p[1]) < 1f) Method.LINEAR else Method.CUBIC
        val crop = warpScaleTranslate(img, inH, inW, p[0].toDouble(), p[1].toDouble(), p[2].toDouble(), p[3].toDouble(), method)
        normalize(crop, mean, std, dst, i, layout)
    }
    return cs
}

/** preprocess.py preprocess_seg: plain resize (area when the width shrinks, else cubic). */
fun preprocessSeg(img: U8Image, inH: Int, inW: Int, mean: FloatArray, std: FloatArray, dst: FloatBuffer, layout: Layout) {
    val method = if (inW < img.width) Method.AREA else Method.CUBIC
    normalize(resize(img, inH, inW, method), mean, std, dst, 0, layout)
}

/** preprocess.py dense_resize_shape: aspect-preserving (h', w'), Python float maths and int() truncation. */
fun denseResizeShape(imageH: Int, imageW: Int, inH: Int, inW: Int): Pair<Int, Int> {
    val r = minOf(inW.toDouble() / imageW, inH.toDouble() / imageH)
    return maxOf(1, (imageH * r).toInt()) to maxOf(1, (imageW * r).toInt())
}

/** preprocess.py preprocess_dense: bilinear aspect-preserving resize + centred zero pad; returns (l, r, t, b). */
fun preprocessDense(img: U8Image, inH: Int, inW: Int, mean: FloatArray, std: FloatArray, dst: FloatBuffer, layout: Layout): IntArray {
    val (nh, nw) = denseResizeShape(img.height, img.width, inH, inW)
    val left = (inW - nw) / 2
    val top = (inH - nh) / 2
    val canvas = U8Image(inH, inW, 3)
    val small = resize(img, nh, nw, Method.LINEAR)
    for (y in 0 until nh) System.arraycopy(small.data, y * nw * 3, canvas.data, ((y + top) * inW + left) * 3, nw * 3)
    normalize(canvas, mean, std, dst, 0, layout)
    return intArrayOf(left, inW - nw - left, top, inH - nh - top)
}
