package io.sapiensedge.kit

import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test
import java.io.File

/**
 * The kit's app-side work per 1024x768 frame and task, raw vs decoded outputs: pre-processing (frame ->
 * input buffer) and post-processing (outputs -> result at the frame's size), median of 10 runs after 3
 * warm-ups, one thread. Synthetic outputs of the real sizes (seg logits 29x1024x768, pose heatmaps
 * 308x256x192 twice for the flip test, one box). Runs only when asked:
 *   mvn -q -B -f android_demo/kit/pom.xml test -Dtest=KitBenchmark -Dsapiens.bench=results/FILE.csv
 */
class KitBenchmark {
    private val h = 1024
    private val w = 768

    private fun frame() = RgbImage(w, h, IntArray(w * h) { i -> val x = i % w; val y = i / w; (0xFF shl 24) or ((x * 255 / w) shl 16) or ((y * 255 / h) shl 8) or ((x * y) and 0xFF) })

    private fun medianMs(block: () -> Unit): Double {
        repeat(3) { block() }
        return List(10) { val t = System.nanoTime(); block(); (System.nanoTime() - t) / 1e6 }.sorted().let { (it[4] + it[5]) / 2 }
    }

    private fun outputs(task: String, decoded: Boolean): Pair<List<Tensor>, List<Tensor>?> {
        val rnd = java.util.Random(0)
        fun t(vararg s: Int, fill: (Int) -> Float = { rnd.nextFloat() }) = Tensor(s, FloatArray(s.fold(1) { a, b -> a * b }, fill))
        return when (task) {
            "seg" -> if (decoded) listOf(t(1, h, w) { (it / 5000 % 29).toFloat() }) to null
                else listOf(t(1, 29, h, w) { (((it % (h * w)) / 5000 % 29) == it / (h * w)).let { b -> if (b) 5f else rnd.nextFloat() } }) to null
            "pose" -> if (decoded) listOf(t(1, 308, 2) { rnd.nextFloat() * 190 }, t(1, 308)) to null else {
                // one sharp peak per map, like a trained model's
                val peak = { i: Int -> val m = i % (256 * 192); val k = i / (256 * 192); val px = (k * 37) % 190 + 1; val py = (k * 53) % 254 + 1
                    val dx = m % 192 - px; val dy = m / 192 - py; kotlin.math.exp(-(dx * dx + dy * dy) / 8.0).toFloat() }
                listOf(t(1, 308, 256, 192, fill = peak)) to listOf(t(1, 308, 256, 192, fill = peak))
            }
            "normal" -> listOf(t(1, 3, h, w)) to null
            else -> listOf(t(1, 3, h, w), Tensor(intArrayOf(1, 1), floatArrayOf(1.5f))) to null
        }
    }

    @Test
    fun `pre and post-processing per 1024x768 frame`() {
        val out = System.getProperty("sapiens.bench").orEmpty()
        assumeTrue(out.isNotEmpty(), "benchmark: pass -Dsapiens.bench=CSV")
        val img = frame()
        val rows = mutableListOf("task,outputs,output MB per frame,pre-processing ms,post-processing ms,total ms")
        val meta = mapOf("flip_indices" to Json.Arr(List(308) { Json.Num("$it") }), "heatmap_stride" to Json.Num("4"))
        for (task in TASKS) for (decoded in listOf(false, true)) {
            if (task == "pointmap" && decoded) continue // decoded pointmaps are the raw ones
            val p = processorFor(testManifest(task, h to w, decoded,
                outputs = if (decoded && task == "pose") listOf(TensorSpec("keypoints", listOf(1, 308, 2), "float32"), TensorSpec("scores", listOf(1, 308), "float32"))
                    else if (decoded) listOf(TensorSpec(if (task == "seg") "labels" else "normals", listOf(-1), "float32")) else listOf(TensorSpec("out", listOf(-1), "float32")),
                meta = meta))
            val (outs, flipped) = outputs(task, decoded)
            var prepared = p.prepare(img)
            val pre = medianMs { prepared = p.prepare(img) }
            val post = medianMs { p.finish(outs, prepared, flipped) }
            // Bytes the app receives: decoded seg labels as uint8, everything else float32.
            val bytes = (outs + (flipped ?: emptyList())).sumOf { it.data.size.toLong() * if (decoded && task == "seg") 1 else 4 }
            rows += "$task,${if (decoded) "decoded" else "raw"},${"%.3f".format(bytes / 1e6)},${"%.1f".format(pre)},${"%.1f".format(post)},${"%.1f".format(pre + post)}"
        }
        val cpu = File("/proc/cpuinfo").takeIf { it.exists() }?.readLines()?.firstOrNull { it.startsWith("model name") }?.substringAfter(":")?.trim() ?: "unknown CPU"
        val header = listOf(
            "# title: Kotlin kit app-side work per 1024x768 frame (pre-processing + decoding), raw vs decoded outputs",
            "# machine: $cpu, ${Runtime.getRuntime().availableProcessors()} cores (desktop JVM, not a phone)",
            "# threads: 1",
            "# versions: ${System.getProperty("java.vm.name")} ${System.getProperty("java.version")}, Kotlin ${KotlinVersion.CURRENT}",
            "# date: ${java.time.LocalDate.now().toString().substring(0, 7)}",
            "# command: mvn -q -B -f android_demo/kit/pom.xml test -Dtest=KitBenchmark -Dsapiens.bench=results/kit-app-side-1024x768_jvm.csv",
            "# notes: synthetic tensors of the real sizes; raw pose includes the flip test (two heatmap sets); the frame is 1024x768 (the model's input size), median of 10 runs; a shared 2-core VM, so +-30 % between runs",
        )
        File(out).writeText((header + rows).joinToString("\n") + "\n")
    }
}
