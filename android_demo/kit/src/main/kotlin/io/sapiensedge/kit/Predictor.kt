package io.sapiensedge.kit

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.FloatBuffer

/**
 * An opened artifact: frame -> task result with the Python runtime's pre/post-processing
 * (runtime/predictor.py's Predictor). The backend is whatever engine the app picked.
 */
class Predictor(val manifest: Manifest, val backend: Backend) : AutoCloseable {
    val processor: TaskProcessor = processorFor(manifest)
    private val flipBuffer = InputBuffer()

    /** Last call's split: milliseconds in pre-processing, the engine and post-processing. */
    var lastTimings = DoubleArray(3)
        private set

    /**
     * Run the model on one frame. `boxes`: pose only, x1, y1, x2, y2 per person (null: the whole frame);
     * `flipTest`: pose with raw heatmaps only (null: the task's default, on for raw pose as upstream).
     */
    fun predict(image: RgbImage, boxes: FloatArray? = null, flipTest: Boolean? = null): TaskResult {
        val t0 = System.nanoTime()
        val prepared = processor.prepare(image, boxes)
        val t1 = System.nanoTime()
        val outputs = run(prepared)
        val flip = flipTest ?: processor.usesFlipTest
        if (flip && !processor.usesFlipTest) {
            throw OptionError("Flip test applies to pose artifacts with raw heatmaps only, not to this ${manifest.task} " +
                "artifact${if (manifest.decoded) " (decoded outputs)" else ""}.")
        }
        val flipped = if (flip) run((processor as PoseProcessor).flipInput(prepared, flipBuffer)) else null
        val t2 = System.nanoTime()
        val result = processor.finish(outputs, prepared, flipped)
        lastTimings = doubleArrayOf((t1 - t0) / 1e6, (t2 - t1) / 1e6, (System.nanoTime() - t2) / 1e6)
        return result
    }

    /** Raw outputs for a prepared batch, NCHW, checked against the manifest; a batch-1 model runs item by item. */
    fun run(prepared: Prepared): List<Tensor> {
        val n = prepared.batch
        val fixedOne = manifest.inputSpec.shape.firstOrNull() == 1
        val parts = if (fixedOne && n > 1) {
            val per = prepared.input.limit() / n
            (0 until n).map { i ->
                val one = ByteBuffer.allocateDirect(per * 4).order(ByteOrder.nativeOrder()).asFloatBuffer()
                for (j in 0 until per) one.put(j, prepared.input.get(i * per + j))
                checked(backend.run(one, prepared.shape.copyOf().also { it[0] = 1 }), 1)
            }
        } else listOf(checked(backend.run(prepared.input, prepared.shape), n))
        if (parts.size == 1) return parts[0]
        return parts[0].indices.map { j ->
            val s = parts[0][j].shape.copyOf().also { it[0] = n }
            Tensor(s, parts.map { it[j].data }.reduce { a, b -> a + b })
        }
    }

    /** Outputs in the manifest's order and shapes (fixed dims must match), converted to NCHW. */
    private fun checked(outputs: List<Tensor>, n: Int): List<Tensor> {
        if (outputs.size != manifest.outputs.size) {
            throw OutputShapeError("${manifest.model} returned ${outputs.size} output(s); its manifest lists " +
                "${manifest.outputs.size} (${manifest.outputs.map { it.name }}). The model file and manifest disagree: re-export.")
        }
        return outputs.mapIndexed { i, t ->
            val spec = manifest.outputs[i]
            val ok = t.shape.size == spec.shape.size && t.shape[0] == n &&
                spec.shape.indices.drop(1).all { d -> spec.shape[d] <= 0 || spec.shape[d] == t.shape[d] }
            if (!ok) {
                throw OutputShapeError("${manifest.model}'s output '${spec.name}' has shape ${t.shape.toList()}, but its " +
                    "manifest says ${spec.shape} (batch $n). The model file does not belong to this manifest: re-export the artifact.")
            }
            if (spec.layout == "NHWC" && t.shape.size == 4) nhwcToNchw(t) else t
        }
    }

    override fun close() = backend.close()
}

/** (N, H, W, C) -> (N, C, H, W). */
fun nhwcToNchw(t: Tensor): Tensor {
    val (n, h, w, c) = t.shape.toList()
    val out = FloatArray(t.data.size)
    for (b in 0 until n) for (y in 0 until h) for (x in 0 until w) for (k in 0 until c) {
        out[((b * c + k) * h + y) * w + x] = t.data[((b * h + y) * w + x) * c + k]
    }
    return Tensor(intArrayOf(n, c, h, w), out)
}

/**
 * Open an artifact folder with ONNX Runtime: read and verify the manifest (digest, every file's sha256),
 * check it is a `task` artifact when `task` is given, open the model file.
 */
fun loadOnnx(folder: File, task: String? = null, provider: OrtProvider = OrtProvider.CPU, threads: Int = 0,
             verify: Boolean = true): Predictor {
    // The engine first: another target's folder (a .mlpackage, a .pte) fails on its files otherwise.
    val manifest = readManifest(folder, task, verify = false)
    if (manifest.target != "onnx") {
        throw WrongTaskError("$folder is a '${manifest.target}' artifact (${manifest.recipe}); ONNX Runtime runs onnx-* " +
            "recipes. Use the ${manifest.target} backend of the app, or export with an onnx recipe.")
    }
    if (verify) readManifest(folder, task, verify = true)
    return Predictor(manifest, OnnxRuntimeBackend(File(folder, manifest.modelFile), manifest, provider, threads))
}
