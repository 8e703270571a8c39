package io.sapiensedge.demo

import android.Manifest.permission.CAMERA
import android.content.pm.PackageManager
import android.graphics.BitmapFactory
import android.os.Bundle
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.ImageView
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import io.sapiensedge.kit.Predictor
import io.sapiensedge.kit.RgbImage
import io.sapiensedge.kit.SapiensEdgeException
import io.sapiensedge.kit.metadataRows
import java.io.File
import java.util.concurrent.Executors

/**
 * Thin UI over the kit: pick an artifact from app storage and a backend, then run it on the live camera
 * (CameraX ImageAnalysis, keep-only-latest, on one background thread) or on a picked photo; the overlay,
 * the latency split and the backend are shown on screen. All pre/post-processing is the kit's.
 */
class MainActivity : AppCompatActivity() {
    private val worker = Executors.newSingleThreadExecutor() // inference never runs on the main thread
    private lateinit var store: ModelStore
    private lateinit var stats: TextView
    private lateinit var overlayView: ImageView
    @Volatile private var predictor: Predictor? = null
    @Volatile private var meta = OverlayMeta(emptyList(), emptyList(), emptyList(), emptyList())
    @Volatile private var paused = false // a picked photo stays on screen until the camera is resumed

    private val pickPhoto = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) {
            paused = true
            worker.execute {
                val bitmap = contentResolver.openInputStream(uri).use { BitmapFactory.decodeStream(it) }
                infer(bitmap.toRgbImage())
            }
        }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        store = ModelStore(this)
        stats = findViewById(R.id.stats)
        overlayView = findViewById(R.id.overlay)
        findViewById<Button>(R.id.pick).setOnClickListener {
            pickPhoto.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        overlayView.setOnClickListener { paused = false }
        setUpModelChoice()
        if (ContextCompat.checkSelfPermission(this, CAMERA) == PackageManager.PERMISSION_GRANTED) startCamera()
        else registerForActivityResult(ActivityResultContracts.RequestPermission()) { if (it) startCamera() }.launch(CAMERA)
    }

    private fun setUpModelChoice() {
        val models = store.list()
        if (models.isEmpty()) {
            stats.text = "No model. adb push an exported folder to\n${store.root}\n(see android_demo/README.md)"
            return
        }
        val modelSpinner = findViewById<Spinner>(R.id.models)
        val backendSpinner = findViewById<Spinner>(R.id.backends)
        modelSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, models.map { it.name })
        modelSpinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(p: AdapterView<*>?, v: android.view.View?, pos: Int, id: Long) {
                worker.execute {
                    val folder = models[pos]
                    val manifest = try { store.open(folder) } catch (e: SapiensEdgeException) { return@execute show(e.message) }
                    val choices = backendChoices(manifest)
                    runOnUiThread {
                        backendSpinner.adapter = ArrayAdapter(this@MainActivity, android.R.layout.simple_spinner_dropdown_item, choices)
                        backendSpinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
                            override fun onItemSelected(p: AdapterView<*>?, v: android.view.View?, i: Int, id: Long) =
                                worker.execute { open(folder, choices[i]) }
                            override fun onNothingSelected(p: AdapterView<*>?) {}
                        }
                    }
                }
            }
            override fun onNothingSelected(p: AdapterView<*>?) {}
        }
    }

    /** Runs on the worker: (re)open the artifact with the chosen engine. */
    private fun open(folder: File, choice: String) {
        predictor?.close()
        predictor = null
        try {
            val manifest = store.open(folder)
            val threads = Runtime.getRuntime().availableProcessors().coerceAtMost(4)
            predictor = Predictor(manifest, openBackend(choice, folder, manifest, threads))
            meta = OverlayMeta(metadataRows(manifest, "palette_rgb"), metadataRows(manifest, "skeleton"),
                metadataRows(manifest, "skeleton_colors"), metadataRows(manifest, "keypoint_colors"))
            show("${manifest.model} ${manifest.recipe}\n${predictor?.backend?.describe()}")
        } catch (e: SapiensEdgeException) {
            show(e.message)
        }
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val preview = Preview.Builder().build().also { it.setSurfaceProvider(findViewById<PreviewView>(R.id.preview).surfaceProvider) }
            val analysis = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST) // a slow model drops frames, never queues them
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(worker) { proxy -> analyze(proxy) }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun analyze(proxy: ImageProxy) {
        proxy.use {
            if (paused || predictor == null) return
            val bitmap = it.toBitmap() // RGBA_8888 -> ARGB_8888 Bitmap (CameraX 1.3+)
            val rotated = if (it.imageInfo.rotationDegrees == 0) bitmap else android.graphics.Bitmap.createBitmap(
                bitmap, 0, 0, bitmap.width, bitmap.height,
                android.graphics.Matrix().apply { postRotate(it.imageInfo.rotationDegrees.toFloat()) }, false)
            infer(rotated.toRgbImage())
        }
    }

    /** Runs on the worker. Pose runs on the whole frame here (no person detector in the demo). */
    private fun infer(frame: RgbImage) {
        val p = predictor ?: return
        try {
            val result = p.predict(frame)
            val (pre, model, post) = p.lastTimings.toList()
            val bitmap = overlay(frame, result, meta)
            runOnUiThread {
                overlayView.setImageBitmap(bitmap)
                stats.text = "%s\n%s\npre %.0f ms | model %.0f ms | post %.0f ms".format(
                    p.manifest.recipe, p.backend.describe(), pre, model, post)
            }
        } catch (e: SapiensEdgeException) {
            show(e.message)
        }
    }

    private fun show(text: String?) = runOnUiThread { stats.text = text }

    override fun onDestroy() {
        worker.execute { predictor?.close() }
        worker.shutdown()
        super.onDestroy()
    }
}
