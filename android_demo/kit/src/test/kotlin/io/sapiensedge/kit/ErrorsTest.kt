package io.sapiensedge.kit

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.nio.FloatBuffer

/** Bad input gets a typed exception whose message says what to do. */
class ErrorsTest {
    @TempDir
    lateinit var tmp: File

    /** A sealed artifact folder: model.onnx (stand-in bytes) + manifest.json with every digest, as export writes it. */
    private fun artifact(edit: (MutableMap<String, Json>) -> Unit = {}): File {
        val dir = File(tmp, "art").apply { mkdirs() }
        File(dir, "model.onnx").writeBytes(ByteArray(64) { it.toByte() })
        val spec = { name: String, shape: List<Int> ->
            Json.Obj(mapOf("name" to Json.Str(name), "shape" to Json.Arr(shape.map { Json.Num("$it") }),
                "dtype" to Json.Str("float32"), "layout" to Json.Str("NCHW")))
        }
        val fields = linkedMapOf<String, Json>(
            "model" to Json.Str("tiny-seg"), "task" to Json.Str("seg"), "recipe" to Json.Str("onnx-fp32"),
            "target" to Json.Str("onnx"), "precision" to Json.Str("fp32"),
            "input_hw" to Json.Arr(listOf(Json.Num("32"), Json.Num("16"))),
            "files" to Json.Obj(mapOf("model.onnx" to Json.Str(sha256File(File(dir, "model.onnx"))))),
            "model_file" to Json.Str("model.onnx"),
            "inputs" to Json.Arr(listOf(spec("image", listOf(1, 3, 32, 16)))),
            "outputs" to Json.Arr(listOf(spec("logits", listOf(1, 29, 32, 16)))),
            "normalization" to Json.Obj(mapOf("mean_rgb" to Json.Arr(listOf(Json.Num("123.675"), Json.Num("116.28"), Json.Num("103.53"))),
                "std_rgb" to Json.Arr(listOf(Json.Num("58.395"), Json.Num("57.12"), Json.Num("57.375"))))),
            "source_weights" to Json.Obj(emptyMap()), "tool_versions" to Json.Obj(emptyMap()),
            "task_metadata" to Json.Obj(mapOf("palette_rgb" to Json.Arr(List(29) { Json.Arr(listOf(Json.Num("$it"), Json.Num("0"), Json.Num("0"))) }))),
            "export_options" to Json.Obj(emptyMap()), "created" to Json.Str("x"), "schema_version" to Json.Num("2"),
        )
        fields[DIGEST_KEY] = Json.Str(manifestDigest(Json.Obj(fields)))
        edit(fields)
        File(dir, MANIFEST_NAME).writeText(canonicalJson(Json.Obj(fields)))
        return dir
    }

    private inline fun <reified E : SapiensEdgeException> fails(vararg needles: String, block: () -> Unit) {
        val e = assertThrows<E> { block() }
        for (n in needles) assertTrue(n in e.message.orEmpty(), "'$n' not in: ${e.message}")
    }

    @Test
    fun `a sealed artifact reads back`() {
        val m = readManifest(artifact(), "seg")
        assertEquals("tiny-seg", m.model)
        assertEquals(16 to 32, m.inputHw.second to m.inputHw.first)
    }

    @Test
    fun `unknown manifest schema`() {
        fails<ManifestVersionError>("schema 3", "Upgrade the app") { readManifest(artifact { it["schema_version"] = Json.Num("3") }) }
        fails<ManifestError>("schema_version") { readManifest(artifact { it.remove("schema_version") }) }
        fails<ManifestVersionError>("Upgrade the app") { readManifest(artifact { it["schema_version"] = Json.Num("99999999999") }) }
    }

    @Test
    fun `malformed task metadata`() {
        val bad = artifact { it["task_metadata"] = Json.Obj(mapOf("palette_rgb" to Json.Arr(listOf(Json.Str("red"))))) }
        fails<ManifestError>("'palette_rgb' is malformed", "re-export") { metadataRows(readManifest(bad, verify = false), "palette_rgb") }
    }

    @Test
    fun `another engine's artifact is refused by its target before its files are read`() {
        val dir = artifact { it["target"] = Json.Str("coreml"); it["model_file"] = Json.Str("model.mlpackage") }
        fails<WrongTaskError>("'coreml' artifact", "ONNX Runtime runs onnx-*") { loadOnnx(dir) }
    }

    @Test
    fun `manifest that is not JSON or lacks a required field`() {
        val dir = artifact()
        File(dir, MANIFEST_NAME).writeText("{\"schema_version\": 2,")
        fails<ManifestError>("is not valid JSON", "copy or re-export") { readManifest(dir) }
        for (field in listOf("model_file", "task", "inputs", "normalization")) {
            fails<ManifestError>("'$field' is missing", "re-export") { readManifest(artifact { it.remove(field) }) }
        }
    }

    @Test
    fun `missing model file or manifest`() {
        val dir = artifact()
        File(dir, "model.onnx").delete()
        fails<ModelFileMissingError>("missing model.onnx", "copy the whole artifact folder") { readManifest(dir) }
        File(dir, MANIFEST_NAME).delete()
        fails<ModelFileMissingError>("has no manifest.json") { readManifest(dir) }
        fails<ModelFileMissingError>("not found") { readManifest(File(tmp, "nowhere")) }
    }

    @Test
    fun `sha256 mismatch of the model file or of the manifest itself`() {
        val dir = artifact()
        File(dir, "model.onnx").appendBytes(byteArrayOf(1))
        fails<ChecksumMismatchError>("model.onnx changed since export", "Copy it again") { readManifest(dir) }
        readManifest(dir, verify = false) // the check can be skipped on purpose
        fails<ChecksumMismatchError>("manifest_sha256 mismatch") {
            readManifest(artifact { it["input_hw"] = Json.Arr(listOf(Json.Num("64"), Json.Num("16"))) })
        }
    }

    @Test
    fun `artifact for another task than requested`() {
        fails<WrongTaskError>("holds a 'seg' model", "'pose' was asked") { readManifest(artifact(), "pose") }
    }

    @Test
    fun `empty image or wrong pixel count`() {
        val p = processorFor(testManifest("seg", 32 to 16))
        fails<ImageError>("empty") { p.prepare(RgbImage(0, 0, IntArray(0))) }
        fails<ImageError>("holds 5 pixels", "12 needed") { p.prepare(RgbImage(4, 3, IntArray(5))) }
        fails<InputShapeError>("only apply to the pose task") { p.prepare(RgbImage(4, 3, IntArray(12)), floatArrayOf(0f, 0f, 1f, 1f)) }
        val pose = processorFor(testManifest("pose", 32 to 16, meta = mapOf("flip_indices" to Json.Arr(emptyList()))))
        fails<InputShapeError>("x2 >= x1") { pose.prepare(RgbImage(4, 3, IntArray(12)), floatArrayOf(3f, 0f, 1f, 1f)) }
    }

    /** A backend that returns whatever shape it is told to. */
    private class FakeBackend(val shapes: List<IntArray>) : Backend {
        override val name = "fake"
        override fun run(input: FloatBuffer, shape: LongArray) = shapes.map { Tensor(it, FloatArray(it.fold(1) { a, b -> a * b })) }
        override fun describe() = "fake"
    }

    @Test
    fun `output tensor whose shape contradicts the manifest`() {
        val m = Manifest.fromJson(Json.parse(File(artifact(), MANIFEST_NAME).readText()))
        val img = RgbImage(4, 3, IntArray(12))
        Predictor(m, FakeBackend(listOf(intArrayOf(1, 29, 32, 16)))).predict(img) // the right shape runs
        fails<OutputShapeError>("'logits' has shape [1, 28, 32, 16]", "[1, 29, 32, 16]", "re-export") {
            Predictor(m, FakeBackend(listOf(intArrayOf(1, 28, 32, 16)))).predict(img)
        }
        fails<OutputShapeError>("returned 2 output(s)") {
            Predictor(m, FakeBackend(listOf(intArrayOf(1, 29, 32, 16), intArrayOf(1)))).predict(img)
        }
        val decoded = testManifest("seg", 32 to 16, decoded = true, outputs = listOf(TensorSpec("labels", listOf(1, -1, -1, -1), "int32")))
        fails<OutputShapeError>("expected 3 dimensions") {
            Predictor(decoded, FakeBackend(listOf(intArrayOf(1, 1, 32, 16)))).predict(img)
        }
    }
}
