package io.sapiensedge.demo

import io.sapiensedge.kit.Backend
import io.sapiensedge.kit.Manifest
import io.sapiensedge.kit.OnnxRuntimeBackend
import io.sapiensedge.kit.OptionError
import io.sapiensedge.kit.OrtProvider
import io.sapiensedge.kit.Tensor
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.tensorflow.lite.Interpreter
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.FloatBuffer

/** The engines the app offers for an artifact's target; NNAPI is opt-in (it can be slower or wrong on some SoCs). */
fun backendChoices(manifest: Manifest): List<String> = when (manifest.target) {
    "onnx" -> listOf("onnxruntime CPU", "onnxruntime XNNPACK", "onnxruntime NNAPI (opt-in)")
    "executorch" -> listOf("executorch")
    "tflite" -> listOf("litert CPU (XNNPACK)")
    else -> emptyList()
}

fun openBackend(choice: String, folder: File, manifest: Manifest, threads: Int): Backend {
    val model = File(folder, manifest.modelFile)
    return when {
        choice.startsWith("onnxruntime") -> OnnxRuntimeBackend(model, manifest,
            when { "XNNPACK" in choice -> OrtProvider.XNNPACK; "NNAPI" in choice -> OrtProvider.NNAPI; else -> OrtProvider.CPU }, threads)
        choice == "executorch" -> ExecuTorchBackend(model)
        choice.startsWith("litert") -> LiteRtBackend(model, threads)
        else -> throw OptionError("No backend '$choice' for a ${manifest.target} artifact; pick one of ${backendChoices(manifest)}.")
    }
}

/** ExecuTorch (.pte, XNNPACK delegate inside the program): float32 NCHW in, outputs in manifest order. */
class ExecuTorchBackend(model: File) : Backend {
    override val name = "executorch"
    private val module = Module.load(model.path)

    override fun run(input: FloatBuffer, shape: LongArray): List<Tensor> {
        val data = FloatArray(input.limit()).also { input.duplicate().apply { rewind() }.get(it) }
        val outs = module.forward(EValue.from(org.pytorch.executorch.Tensor.fromBlob(data, shape)))
        return outs.map { ev -> ev.toTensor().let { t -> Tensor(t.shape().map { it.toInt() }.toIntArray(), t.dataAsFloatArray) } }
    }

    override fun describe() = "executorch (XNNPACK delegate)"
    override fun close() = module.destroy()
}

/** LiteRT (.tflite): the buffer is fed as is (NHWC artifacts are prepared NHWC by the kit). */
class LiteRtBackend(model: File, threads: Int) : Backend {
    override val name = "litert"
    private val interpreter = Interpreter(model, Interpreter.Options().apply { if (threads > 0) setNumThreads(threads) })

    override fun run(input: FloatBuffer, shape: LongArray): List<Tensor> {
        val dims = shape.map { it.toInt() }.toIntArray()
        if (!interpreter.getInputTensor(0).shape().contentEquals(dims)) {
            interpreter.resizeInput(0, dims)
            interpreter.allocateTensors()
        }
        val outputs = HashMap<Int, Any>()
        val buffers = (0 until interpreter.outputTensorCount).map { i ->
            val n = interpreter.getOutputTensor(i).numElements()
            ByteBuffer.allocateDirect(n * 4).order(ByteOrder.nativeOrder()).also { outputs[i] = it }
        }
        interpreter.runForMultipleInputsOutputs(arrayOf(input.duplicate().apply { rewind() }), outputs)
        return buffers.mapIndexed { i, b ->
            b.rewind()
            val f = b.asFloatBuffer()
            Tensor(interpreter.getOutputTensor(i).shape(), FloatArray(f.remaining()).also { f.get(it) })
        }
    }

    override fun describe() = "litert ${org.tensorflow.lite.TensorFlowLite.runtimeVersion()}"
    override fun close() = interpreter.close()
}
