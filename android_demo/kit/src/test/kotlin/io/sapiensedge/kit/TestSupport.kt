package io.sapiensedge.kit

import org.junit.jupiter.api.Assumptions.assumeTrue
import java.io.File
import java.nio.FloatBuffer

/** Folders the Python side writes for these tests (tests/android_kit/test_kotlin_kit.py passes them). */
object Fixtures {
    fun dir(property: String): File {
        val path = System.getProperty(property).orEmpty()
        assumeTrue(path.isNotEmpty(), "-D$property not set: run through `make test` (tests/android_kit/test_kotlin_kit.py)")
        return File(path)
    }
}

/** A manifest for unit tests (no file behind it). */
fun testManifest(task: String, inputHw: Pair<Int, Int>, decoded: Boolean = false, layout: String = "NCHW",
                 outputs: List<TensorSpec> = listOf(TensorSpec("out", listOf(-1, -1, -1, -1), "float32")),
                 meta: Map<String, Json> = emptyMap()): Manifest {
    val (h, w) = inputHw
    val shape = if (layout == "NHWC") listOf(-1, h, w, 3) else listOf(-1, 3, h, w)
    return Manifest("test-$task", task, "onnx-fp32", "onnx", "fp32", inputHw, emptyMap(), "model.onnx",
        listOf(TensorSpec("image", shape, "float32", layout)), outputs,
        floatArrayOf(123.675f, 116.28f, 103.53f), floatArrayOf(58.395f, 57.12f, 57.375f),
        Json.Obj(meta), Json.Obj(if (decoded) mapOf("decoded" to Json.Bool(true)) else emptyMap()), SCHEMA_VERSION)
}

fun maxAbsDiff(a: FloatArray, b: FloatArray): Double {
    require(a.size == b.size) { "sizes ${a.size} vs ${b.size}" }
    var m = 0.0
    for (i in a.indices) m = maxOf(m, kotlin.math.abs(a[i].toDouble() - b[i].toDouble()))
    return m
}

fun FloatBuffer.toArray(n: Int): FloatArray = FloatArray(n) { get(it) }
