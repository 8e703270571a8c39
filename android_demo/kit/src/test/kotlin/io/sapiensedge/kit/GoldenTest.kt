package io.sapiensedge.kit

import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import java.io.File

/**
 * The kit against golden vectors written by `python -m sapiens_edge.runtime.golden` in the same run.
 * Tolerances: input tensors exact but for uint8 rounding ties (<= 1 level, < 1 % of values);
 * keypoints <= 1e-3 px; label maps identical; normals and pointmaps 1e-5.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class GoldenTest {
    private lateinit var dir: File
    private lateinit var doc: Json.Obj
    private lateinit var frame: RgbImage
    private lateinit var meta: Map<String, Json>

    @BeforeAll
    fun load() {
        dir = Fixtures.dir("sapiens.golden")
        doc = Json.parse(File(dir, "cases.json").readText()) as Json.Obj
        val hw = (doc.fields["frame_hw"] as Json.Arr).items.map { (it as Json.Num).double.toInt() }
        frame = RgbImage(hw[1], hw[0], Npy.read(File(dir, "frame.npy")).ints())
        meta = mapOf("flip_indices" to doc.fields.getValue("flip_indices"), "palette_rgb" to doc.fields.getValue("palette_rgb"),
            "heatmap_stride" to Json.Num("4"))
    }

    private fun cases(kind: String): List<Json.Obj> =
        (doc.fields["cases"] as Json.Arr).items.map { it as Json.Obj }.filter { (it.fields["kind"] as Json.Str).value == kind }

    private fun str(c: Json.Obj, k: String) = (c.fields[k] as Json.Str).value
    private fun ints(c: Json.Obj, k: String) = (c.fields[k] as Json.Arr).items.map { (it as Json.Num).double.toInt() }
    private fun arr(c: Json.Obj, group: String, k: String): Npy =
        Npy.read(File(dir, ((c.fields[group] as Json.Obj).fields[k] as Json.Str).value))
    private fun has(c: Json.Obj, k: String) = k in (c.fields["inputs"] as Json.Obj).fields

    private fun processor(c: Json.Obj, layout: String = "NCHW"): TaskProcessor {
        val hw = ints(c, "input_hw")
        return processorFor(testManifest(str(c, "task"), hw[0] to hw[1], decoded = str(c, "kind") == "decoded", layout = layout,
            outputs = (c.fields["inputs"] as Json.Obj).fields.keys.filter { it != "boxes" }.map { TensorSpec(it, listOf(-1), "float32") },
            meta = meta))
    }

    private fun prepare(c: Json.Obj, p: TaskProcessor): Prepared =
        p.prepare(frame, if (has(c, "boxes")) arr(c, "inputs", "boxes").floats() else null)

    private fun tensor(n: Npy) = Tensor(n.shape, n.floats())

    @Test
    fun `frame to input tensor, every task and resampling path, NCHW and NHWC`() {
        val all = cases("preprocess")
        assertEquals(4, all.size)
        for (c in all) for (layout in listOf("NCHW", "NHWC")) {
            val p = processor(c, layout)
            val prep = prepare(c, p)
            val want = arr(c, "expected", "input")
            val (n, ch, h, w) = want.shape.toList()
            val got = prep.input.toArray(want.data.size)
            val nchw = if (layout == "NCHW") got else nhwcToNchw(Tensor(intArrayOf(n, h, w, ch), got)).data
            val diff = maxAbsDiff(nchw, want.floats())
            val exact = nchw.indices.count { nchw[it] == want.data[it].toFloat() }.toDouble() / nchw.size
            // One uint8 level is 1/std ~= 0.0175 after normalization.
            assertTrue(diff <= 1.0 / 57.12 + 1e-5, "${str(c, "name")} $layout: max diff $diff")
            assertTrue(exact >= 0.99, "${str(c, "name")} $layout: only $exact of the values exact")
            if (str(c, "task") == "pose") {
                assertEquals(0.0, maxAbsDiff((prep.context as PoseContext).centerScales, arr(c, "expected", "center_scale").floats()))
            }
            if (c.fields.containsKey("pad")) assertEquals(ints(c, "pad"), (prep.context as DenseContext).pad.toList())
        }
    }

    private fun finish(c: Json.Obj): TaskResult {
        val p = processor(c)
        val prep = prepare(c, p)
        val ins = (c.fields["inputs"] as Json.Obj).fields.keys.filter { it != "boxes" && it != "flipped" }
        val flipped = if (has(c, "flipped")) listOf(tensor(arr(c, "inputs", "flipped"))) else null
        return p.finish(ins.map { tensor(arr(c, "inputs", it)) }, prep, flipped)
    }

    @Test
    fun `raw and decoded pose outputs give the runtime's keypoints within 1e-3 px`() {
        val all = cases("raw").filter { str(it, "task") == "pose" } + cases("decoded").filter { str(it, "task") == "pose" }
        assertEquals(3, all.size)
        for (c in all) {
            val r = finish(c) as PoseResult
            val kp = arr(c, "expected", "keypoints").floats()
            assertTrue(maxAbsDiff(r.keypoints, kp) <= 1e-3, "${str(c, "name")}: keypoints off by ${maxAbsDiff(r.keypoints, kp)} px")
            assertTrue(maxAbsDiff(r.scores, arr(c, "expected", "scores").floats()) <= 1e-6, "${str(c, "name")}: scores")
            assertEquals(has(c, "flipped"), r.flipTest)
        }
    }

    @Test
    fun `raw and decoded seg outputs give the runtime's label map`() {
        val all = cases("raw").filter { str(it, "task") == "seg" } + cases("decoded").filter { str(it, "task") == "seg" }
        assertEquals(3, all.size)
        for (c in all) {
            val r = finish(c) as SegResult
            val want = arr(c, "expected", "labels").ints()
            assertArrayEquals(want, r.labels, str(c, "name"))
            assertTrue(want.toSet().size > 2, "a label map with boundaries")
        }
    }

    @Test
    fun `raw and decoded normals, and the metric pointmap, within 1e-5`() {
        val all = (cases("raw") + cases("decoded")).filter { str(it, "task") in setOf("normal", "pointmap") }
        assertEquals(3, all.size)
        for (c in all) {
            when (val r = finish(c)) {
                is NormalResult -> assertTrue(maxAbsDiff(r.normals, arr(c, "expected", "normals").floats()) <= 1e-5, str(c, "name"))
                is PointmapResult -> {
                    assertTrue(maxAbsDiff(r.pointmap, arr(c, "expected", "pointmap").floats()) <= 1e-5, str(c, "name"))
                    assertEquals(arr(c, "expected", "focal_length").data[0], r.focalLength, 1e-9)
                }
                else -> error("unexpected $r")
            }
        }
    }

    @Test
    fun `seg and normal overlays give visualize_py's pixels`() {
        val all = cases("overlay")
        assertEquals(2, all.size)
        val palette = (doc.fields["palette_rgb"] as Json.Arr).items.map { r -> (r as Json.Arr).items.map { (it as Json.Num).double.toInt() }.toIntArray() }
        for (c in all) {
            val got = when (str(c, "task")) {
                "seg" -> overlaySeg(frame, arr(c, "inputs", "labels").ints(), palette)
                else -> normalToRgb(arr(c, "inputs", "normals").floats())
            }
            val want = arr(c, "expected", "rgb").ints() // (H, W, 3)
            val rgb = IntArray(got.size * 3) { i -> (got[i / 3] shr (16 - 8 * (i % 3))) and 0xFF }
            assertArrayEquals(want, rgb, str(c, "name"))
        }
    }

    @Test
    fun `RGBA pixels and ARGB pixels give the same input, in one reused direct buffer`() {
        val c = cases("preprocess").first { str(it, "task") == "seg" }
        val p = processor(c)
        val a = prepare(c, p)
        val first = a.input.toArray(a.input.limit())
        val rgba = RgbImage(frame.width, frame.height, IntArray(frame.pixels.size) { (frame.pixels[it] shl 8) or 0xFF }, PixelFormat.RGBA)
        val b = p.prepare(rgba)
        assertTrue(b.input.isDirect && b.input === a.input, "the buffer is reused from frame to frame")
        assertArrayEquals(first, b.input.toArray(b.input.limit()))
    }
}
