package io.sapiensedge.kit

import java.nio.FloatBuffer

/** An output tensor as float32 (class ids and other integer outputs converted exactly), NCHW like the manifest says. */
class Tensor(val shape: IntArray, val data: FloatArray)

/**
 * An inference engine behind the kit (runtime/backends/__init__.py's Session): ONNX Runtime here;
 * ExecuTorch and LiteRT in the app module. `run` gets the prepared input in the manifest's layout and
 * returns the outputs in `manifest.outputs` order, 4-D ones in the manifest's layout.
 */
interface Backend : AutoCloseable {
    val name: String
    fun run(input: FloatBuffer, shape: LongArray): List<Tensor>
    /** One line for the screen: engine, version, accelerator. */
    fun describe(): String
    override fun close() {}
}
