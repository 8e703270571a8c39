package io.sapiensedge.kit

import ai.onnxruntime.OnnxJavaType
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtException
import ai.onnxruntime.OrtSession
import java.io.File
import java.nio.FloatBuffer

/** Execution providers the app may ask for; none is ever chosen silently (as in runtime/backends). */
enum class OrtProvider { CPU, XNNPACK, NNAPI }

/**
 * The ONNX Runtime backend (ai.onnxruntime: onnxruntime on a desktop JVM, onnxruntime-android on a phone,
 * same API). runtime/backends/onnxruntime_backend.py's counterpart.
 */
class OnnxRuntimeBackend(modelFile: File, private val manifest: Manifest, val provider: OrtProvider = OrtProvider.CPU,
                         threads: Int = 0) : Backend {
    override val name = "onnxruntime"
    private val env: OrtEnvironment = OrtEnvironment.getEnvironment()
    private val session: OrtSession

    init {
        if (manifest.inputSpec.dtype != "float32") {
            throw OptionError("${manifest.model} (${manifest.recipe}) takes ${manifest.inputSpec.dtype} input; the kit feeds " +
                "float32. Use an onnx-fp32/-fp16/-int8 recipe (their inputs stay float32).")
        }
        val opts = OrtSession.SessionOptions()
        try {
            if (threads > 0) opts.setIntraOpNumThreads(threads)
            opts.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT)
            when (provider) {
                OrtProvider.CPU -> {}
                OrtProvider.XNNPACK -> opts.addXnnpack(mapOf("intra_op_num_threads" to maxOf(threads, 1).toString()))
                OrtProvider.NNAPI -> opts.addNnapi()
            }
        } catch (e: OrtException) {
            throw OptionError("ONNX Runtime ${env.version} here has no $provider execution provider (${e.message}); " +
                "use OrtProvider.CPU, or the onnxruntime-android package on a phone.")
        }
        session = env.createSession(modelFile.path, opts)
    }

    override fun run(input: FloatBuffer, shape: LongArray): List<Tensor> {
        OnnxTensor.createTensor(env, input, shape).use { x ->
            session.run(mapOf(manifest.inputSpec.name to x)).use { result ->
                return manifest.outputs.map { spec ->
                    val t = result.get(spec.name).orElseThrow {
                        OutputShapeError("The model file has no output '${spec.name}' its manifest lists; re-export the artifact.")
                    } as OnnxTensor
                    Tensor(t.info.shape.map { it.toInt() }.toIntArray(), floats(t))
                }
            }
        }
    }

    private fun floats(t: OnnxTensor): FloatArray = when (t.info.type) {
        OnnxJavaType.FLOAT, OnnxJavaType.FLOAT16, OnnxJavaType.BFLOAT16 -> t.floatBuffer.let { b -> FloatArray(b.remaining()).also { b.get(it) } }
        OnnxJavaType.UINT8 -> t.byteBuffer.let { b -> FloatArray(b.remaining()) { (b.get(it).toInt() and 0xFF).toFloat() } }
        OnnxJavaType.INT8 -> t.byteBuffer.let { b -> FloatArray(b.remaining()) { b.get(it).toFloat() } }
        OnnxJavaType.INT32 -> t.intBuffer.let { b -> FloatArray(b.remaining()) { b.get(it).toFloat() } }
        OnnxJavaType.INT64 -> t.longBuffer.let { b -> FloatArray(b.remaining()) { b.get(it).toFloat() } }
        else -> throw OutputShapeError("Output of type ${t.info.type} is not one the kit decodes; re-export the artifact.")
    }

    override fun describe(): String = "onnxruntime ${env.version} ($provider)"

    override fun close() = session.close()
}
