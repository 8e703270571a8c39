package io.sapiensedge.kit

import java.nio.FloatBuffer

/*
 * runtime/tasks.py in Kotlin: one prepare/finish pair per task, shared by every backend. A backend only
 * turns the prepared input buffer into raw (or decoded) output tensors.
 */

/** What finish() needs beyond the outputs: the original size, and pose boxes (centres/scales) or dense padding. */
sealed class Context(val imageH: Int, val imageW: Int, val inputH: Int, val inputW: Int)

class PoseContext(imageH: Int, imageW: Int, inputH: Int, inputW: Int, val boxes: FloatArray, val centerScales: FloatArray) :
    Context(imageH, imageW, inputH, inputW) {
    val persons: Int get() = boxes.size / 4
}

class DenseContext(imageH: Int, imageW: Int, inputH: Int, inputW: Int, val pad: IntArray = IntArray(4)) :
    Context(imageH, imageW, inputH, inputW)

/** The model input (a reused direct buffer, `shape` in the manifest's layout) and its context. */
class Prepared(val input: FloatBuffer, val shape: LongArray, val layout: Layout, val context: Context) {
    val batch: Int get() = shape[0].toInt()
}

/** The kit's task processors, configured from the manifest (normalization, layout, metadata, decoded or raw). */
sealed class TaskProcessor(val manifest: Manifest) {
    abstract val task: String
    open val usesFlipTest: Boolean = false
    val inputH: Int = manifest.inputHw.first
    val inputW: Int = manifest.inputHw.second
    val layout: Layout = if (manifest.inputSpec.layout == "NHWC") Layout.NHWC else Layout.NCHW
    protected val buffer = InputBuffer()

    abstract fun prepare(image: RgbImage, boxes: FloatArray? = null): Prepared
    abstract fun finish(outputs: List<Tensor>, prepared: Prepared, flipped: List<Tensor>? = null): TaskResult

    protected fun shape(n: Int): LongArray =
        if (layout == Layout.NCHW) longArrayOf(n.toLong(), 3, inputH.toLong(), inputW.toLong())
        else longArrayOf(n.toLong(), inputH.toLong(), inputW.toLong(), 3)

    protected fun noBoxes(boxes: FloatArray?) {
        if (boxes != null && boxes.isNotEmpty()) throw InputShapeError("Person boxes only apply to the pose task, not to '$task'.")
    }

    /** Output `name` (decoded artifacts) or index `i` (raw), checked for rank and batch like tasks.py _output. */
    protected fun output(outputs: List<Tensor>, i: Int, rank: Int, n: Int, name: String? = null): Tensor {
        val at = if (name != null) manifest.outputs.indexOfFirst { it.name == name } else i
        if (at < 0 || at >= outputs.size) {
            throw OutputShapeError("The $task model (${manifest.model}) returned ${outputs.size} output(s) without " +
                "'${name ?: "#$i"}'; its manifest lists ${manifest.outputs.map { it.name }}. Re-export the artifact.")
        }
        val t = outputs[at]
        if (t.shape.size != rank || t.shape[0] != n) {
            throw OutputShapeError("The $task model's output '${manifest.outputs.getOrNull(at)?.name ?: at}' has shape " +
                "${t.shape.toList()}; expected $rank dimensions with batch $n. The model file does not match its manifest: re-export the artifact.")
        }
        return t
    }
}

class PoseProcessor(manifest: Manifest) : TaskProcessor(manifest) {
    override val task = "pose"
    override val usesFlipTest = !manifest.decoded // a decoded graph returns keypoints: nothing to merge
    val flipIndices: IntArray = intList(manifest.taskMetadata, "flip_indices")
    private val stride: Int = (manifest.taskMetadata.fields["heatmap_stride"] as? Json.Num)?.double?.toInt() ?: 4

    override fun prepare(image: RgbImage, boxes: FloatArray?): Prepared {
        val u8 = toU8(image)
        val b = checkBoxes(boxes, u8.height, u8.width).copyOf()
        val n = b.size / 4
        val dst = buffer.acquire(n * 3 * inputH * inputW)
        val cs = preprocessPose(u8, b, inputH, inputW, manifest.meanRgb, manifest.stdRgb, dst, layout)
        return Prepared(dst, shape(n), layout, PoseContext(u8.height, u8.width, inputH, inputW, b, cs))
    }

    override fun finish(outputs: List<Tensor>, prepared: Prepared, flipped: List<Tensor>?): PoseResult {
        val ctx = prepared.context as PoseContext
        val n = ctx.persons
        if (manifest.decoded) return finishDecoded(outputs, ctx)
        var hm = output(outputs, 0, 4, n)
        val (k, h, w) = Triple(hm.shape[1], hm.shape[2], hm.shape[3])
        var data = hm.data
        if (flipped != null) {
            val f = output(flipped, 0, 4, n)
            if (k != flipIndices.size || !f.shape.contentEquals(hm.shape)) {
                throw OutputShapeError("Flip test needs two heatmap batches of ${flipIndices.size} channels; got " +
                    "${hm.shape.toList()} and ${f.shape.toList()}.")
            }
            data = FloatArray(data.size)
            for (p in 0 until n) {
                mergeFlip(hm.data.copyOfRange(p * k * h * w, (p + 1) * k * h * w), f.data.copyOfRange(p * k * h * w, (p + 1) * k * h * w),
                    k, h, w, flipIndices).copyInto(data, p * k * h * w)
            }
        }
        val keypoints = FloatArray(n * k * 2)
        val scores = FloatArray(n * k)
        for (p in 0 until n) {
            val d = decodeUdpDark(data, k, h, w, p * k * h * w)
            d.scores.copyInto(scores, p * k)
            heatmapToImage(d.coords, ctx.centerScales, 4 * p, h, w, inputH, inputW, keypoints, p * k * 2)
        }
        return PoseResult(ctx.imageH, ctx.imageW, inputH, inputW, n, k, keypoints, scores, ctx.boxes, flipped != null)
    }

    /** Decoded contract: keypoints [N, K, 2] in heatmap pixels (refined in the graph) + scores [N, K]. */
    private fun finishDecoded(outputs: List<Tensor>, ctx: PoseContext): PoseResult {
        val n = ctx.persons
        val kp = output(outputs, 0, 3, n, "keypoints")
        val sc = output(outputs, 1, 2, n, "scores")
        val k = kp.shape[1]
        if (kp.shape[2] != 2 || sc.shape[1] != k) {
            throw OutputShapeError("Decoded pose outputs must be keypoints [N, K, 2] and scores [N, K]; got " +
                "${kp.shape.toList()} and ${sc.shape.toList()}. Re-export the artifact.")
        }
        val keypoints = FloatArray(n * k * 2)
        val hmH = inputH / stride
        val hmW = inputW / stride
        for (p in 0 until n) {
            heatmapToImage(kp.data.copyOfRange(p * k * 2, (p + 1) * k * 2), ctx.centerScales, 4 * p, hmH, hmW, inputH, inputW, keypoints, p * k * 2)
        }
        return PoseResult(ctx.imageH, ctx.imageW, inputH, inputW, n, k, keypoints, sc.data.copyOf(), ctx.boxes, false)
    }

    /** The input mirrored along its width (the flip test's second run). */
    fun flipInput(prepared: Prepared, into: InputBuffer): Prepared {
        val n = prepared.batch
        val dst = into.acquire(n * 3 * inputH * inputW)
        val src = prepared.input
        val rows = if (layout == Layout.NCHW) n * 3 * inputH else n * inputH
        val px = if (layout == Layout.NCHW) 1 else 3
        for (r in 0 until rows) {
            val base = r * inputW * px
            for (x in 0 until inputW) for (c in 0 until px) dst.put(base + x * px + c, src.get(base + (inputW - 1 - x) * px + c))
        }
        return Prepared(dst, prepared.shape, layout, prepared.context)
    }
}

class SegProcessor(manifest: Manifest) : TaskProcessor(manifest) {
    override val task = "seg"
    /** Class colours for overlays (task_metadata.palette_rgb). */
    val palette: List<IntArray> by lazy { rows(manifest.taskMetadata, "palette_rgb") }
    private val metaClasses: Int? = (manifest.taskMetadata.fields["class_names"] as? Json.Arr)?.items?.size
        ?: (manifest.taskMetadata.fields["palette_rgb"] as? Json.Arr)?.items?.size

    override fun prepare(image: RgbImage, boxes: FloatArray?): Prepared {
        noBoxes(boxes)
        val u8 = toU8(image)
        val dst = buffer.acquire(3 * inputH * inputW)
        preprocessSeg(u8, inputH, inputW, manifest.meanRgb, manifest.stdRgb, dst, layout)
        return Prepared(dst, shape(1), layout, DenseContext(u8.height, u8.width, inputH, inputW))
    }

    override fun finish(outputs: List<Tensor>, prepared: Prepared, flipped: List<Tensor>?): SegResult {
        val ctx = prepared.context
        val labels: IntArray
        val classes: Int
        if (manifest.decoded) {
            val t = output(outputs, 0, 3, 1, "labels")
            val ids = IntArray(t.data.size) { t.data[it].toInt() }
            labels = nearestLabels(ids, t.shape[1], t.shape[2], ctx.imageH, ctx.imageW)
            classes = metaClasses ?: ((ids.maxOrNull() ?: 0) + 1)
        } else {
            val t = output(outputs, 0, 4, 1)
            labels = segLabels(t.data, t.shape[1], t.shape[2], t.shape[3], ctx.imageH, ctx.imageW)
            classes = metaClasses ?: t.shape[1]
        }
        return SegResult(ctx.imageH, ctx.imageW, inputH, inputW, labels, classFractions(labels, classes))
    }
}

sealed class DenseProcessor(manifest: Manifest) : TaskProcessor(manifest) {
    override fun prepare(image: RgbImage, boxes: FloatArray?): Prepared {
        noBoxes(boxes)
        val u8 = toU8(image)
        val dst = buffer.acquire(3 * inputH * inputW)
        val pad = preprocessDense(u8, inputH, inputW, manifest.meanRgb, manifest.stdRgb, dst, layout)
        return Prepared(dst, shape(1), layout, DenseContext(u8.height, u8.width, inputH, inputW, pad))
    }

    protected fun chw(t: Tensor): Chw {
        if (t.shape[1] != 3) {
            throw OutputShapeError("The $task model's output has shape ${t.shape.toList()}; expected 3 channels. Re-export the artifact.")
        }
        return Chw(3, t.shape[2], t.shape[3], t.data)
    }
}

class NormalProcessor(manifest: Manifest) : DenseProcessor(manifest) {
    override val task = "normal"

    override fun finish(outputs: List<Tensor>, prepared: Prepared, flipped: List<Tensor>?): NormalResult {
        val ctx = prepared.context as DenseContext
        val raw = chw(output(outputs, 0, 4, 1, if (manifest.decoded) "normals" else null))
        // Decoded outputs are unit vectors already; raw ones are normalized here (normal.py unit_normals).
        val normals = postprocessNormal(raw, ctx.pad, ctx.imageH, ctx.imageW, unit = !manifest.decoded)
        return NormalResult(ctx.imageH, ctx.imageW, inputH, inputW, normals)
    }
}

class PointmapProcessor(manifest: Manifest) : DenseProcessor(manifest) {
    override val task = "pointmap"

    override fun finish(outputs: List<Tensor>, prepared: Prepared, flipped: List<Tensor>?): PointmapResult {
        val ctx = prepared.context as DenseContext
        val raw = chw(output(outputs, 0, 4, 1))
        val scaleT = output(outputs, 1, 2, 1)
        if (scaleT.data.size != 1) throw OutputShapeError("The pointmap model's scale output has shape ${scaleT.shape.toList()}; expected [1, 1].")
        val scale = scaleT.data[0]
        return PointmapResult(ctx.imageH, ctx.imageW, inputH, inputW, postprocessPointmap(raw, scale, ctx.pad, ctx.imageH, ctx.imageW),
            scale, focalLength(scale))
    }
}

/** The processor for the manifest's task (tasks.py get_processor). */
fun processorFor(manifest: Manifest): TaskProcessor = when (manifest.task) {
    "pose" -> PoseProcessor(manifest)
    "seg" -> SegProcessor(manifest)
    "normal" -> NormalProcessor(manifest)
    "pointmap" -> PointmapProcessor(manifest)
    else -> throw WrongTaskError("Unknown task '${manifest.task}'. Known tasks: ${TASKS.joinToString()}.")
}

internal fun intList(o: Json.Obj, key: String): IntArray =
    (o.fields[key] as? Json.Arr)?.items?.map { ints(it, key) }?.toIntArray()
        ?: throw ManifestError("The manifest's task_metadata has no '$key'; re-export the artifact.")

internal fun rows(o: Json.Obj, key: String): List<IntArray> =
    (o.fields[key] as? Json.Arr)?.items?.map { r ->
        ((r as? Json.Arr) ?: malformed(key)).items.map { ints(it, key) }.toIntArray()
    } ?: throw ManifestError("The manifest's task_metadata has no '$key'; re-export the artifact.")

private fun ints(v: Json, key: String): Int = (v as? Json.Num)?.double?.toInt() ?: malformed(key)

private fun malformed(key: String): Nothing =
    throw ManifestError("The manifest's task_metadata '$key' is malformed (numbers expected); re-export the artifact.")

/** Rows of ints from task_metadata (palette_rgb, skeleton, skeleton_colors, keypoint_colors); empty when absent. */
fun metadataRows(manifest: Manifest, key: String): List<IntArray> =
    if (key in manifest.taskMetadata.fields) rows(manifest.taskMetadata, key) else emptyList()
