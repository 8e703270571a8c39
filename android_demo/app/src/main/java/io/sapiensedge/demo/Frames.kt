package io.sapiensedge.demo

import android.graphics.Bitmap
import io.sapiensedge.kit.NormalResult
import io.sapiensedge.kit.PixelFormat
import io.sapiensedge.kit.PointmapResult
import io.sapiensedge.kit.PoseResult
import io.sapiensedge.kit.RgbImage
import io.sapiensedge.kit.SegResult
import io.sapiensedge.kit.TaskResult
import io.sapiensedge.kit.depthToRgb
import io.sapiensedge.kit.drawPose
import io.sapiensedge.kit.normalToRgb
import io.sapiensedge.kit.overlaySeg

/** The only Android-specific conversions: Bitmap <-> the kit's packed ARGB ints. */
fun Bitmap.toRgbImage(): RgbImage {
    val argb = if (config == Bitmap.Config.ARGB_8888) this else copy(Bitmap.Config.ARGB_8888, false)
    val px = IntArray(width * height)
    argb.getPixels(px, 0, width, 0, 0, width, height)
    return RgbImage(width, height, px, PixelFormat.ARGB)
}

/** The task's overlay at the frame's size (all drawing is the kit's). */
fun overlay(frame: RgbImage, result: TaskResult, meta: OverlayMeta): Bitmap {
    val px = when (result) {
        is SegResult -> overlaySeg(frame, result.labels, meta.palette)
        is PoseResult -> drawPose(frame, result, meta.skeleton, meta.linkColors, meta.keypointColors)
        is NormalResult -> normalToRgb(result.normals)
        is PointmapResult -> depthToRgb(result.pointmap)
    }
    return Bitmap.createBitmap(px, frame.width, frame.height, Bitmap.Config.ARGB_8888)
}

/** Colours and links from the manifest's task_metadata (empty lists where the task has none). */
class OverlayMeta(val palette: List<IntArray>, val skeleton: List<IntArray>, val linkColors: List<IntArray>,
                  val keypointColors: List<IntArray>)
