package io.sapiensedge.kit

/* runtime/results.py in Kotlin: one result type per task, at the original image size. */

const val POSE_SCORE_THRESHOLD = 0.3f // drawing only; every keypoint and score is kept

sealed class TaskResult(val task: String, val imageH: Int, val imageW: Int, val inputH: Int, val inputW: Int)

/** keypoints: persons x K x (x, y) image pixels; scores: persons x K; boxes: persons x 4. */
class PoseResult(imageH: Int, imageW: Int, inputH: Int, inputW: Int, val persons: Int, val numKeypoints: Int,
                 val keypoints: FloatArray, val scores: FloatArray, val boxes: FloatArray, val flipTest: Boolean) :
    TaskResult("pose", imageH, imageW, inputH, inputW)

/** labels: (H, W) class ids; fractions: pixel share per class. */
class SegResult(imageH: Int, imageW: Int, inputH: Int, inputW: Int, val labels: IntArray, val fractions: DoubleArray) :
    TaskResult("seg", imageH, imageW, inputH, inputW)

/** normals: (H, W, 3) x, y, z in the camera frame. */
class NormalResult(imageH: Int, imageW: Int, inputH: Int, inputW: Int, val normals: FloatArray) :
    TaskResult("normal", imageH, imageW, inputH, inputW)

/** pointmap: (H, W, 3) metric X, Y, Z; focalLength in network-input pixels. */
class PointmapResult(imageH: Int, imageW: Int, inputH: Int, inputW: Int, val pointmap: FloatArray, val scale: Float,
                     val focalLength: Double) : TaskResult("pointmap", imageH, imageW, inputH, inputW)
