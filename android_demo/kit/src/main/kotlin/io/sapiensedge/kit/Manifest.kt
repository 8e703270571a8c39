package io.sapiensedge.kit

import java.io.File
import java.security.MessageDigest

/** manifest.py's SCHEMA_VERSION and the versions this kit reads (1: no self-digest, 2: `manifest_sha256`). */
const val SCHEMA_VERSION = 2
const val MANIFEST_NAME = "manifest.json"
const val DIGEST_KEY = "manifest_sha256"
val TASKS = listOf("pose", "seg", "normal", "pointmap")

/** manifest.py's TensorSpec: `shape` entries <= 0 are dynamic. */
data class TensorSpec(val name: String, val shape: List<Int>, val dtype: String, val layout: String = "NCHW")

/** manifest.py's Manifest (the fields an app needs), read from an artifact folder's manifest.json. */
data class Manifest(
    val model: String,
    val task: String,
    val recipe: String,
    val target: String,
    val precision: String,
    val inputHw: Pair<Int, Int>,
    val files: Map<String, String>,
    val modelFile: String,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    val meanRgb: FloatArray,
    val stdRgb: FloatArray,
    val taskMetadata: Json.Obj,
    val exportOptions: Json.Obj,
    val schemaVersion: Int,
) {
    /** Decoded outputs (issue 22 part 1): the graph already holds the task's decoding. */
    val decoded: Boolean get() = (exportOptions.fields["decoded"] as? Json.Bool)?.value == true

    val inputSpec: TensorSpec get() = inputs[0]

    companion object {
        /** Parse a manifest document; `where` names the file in error messages. */
        fun fromJson(doc: Json, where: String = MANIFEST_NAME): Manifest {
            val o = doc as? Json.Obj ?: throw ManifestError("$where is not a JSON object: not a sapiens-edge manifest.")
            // An integer too large for Int is a schema from the future, not a malformed manifest.
            val version = (o.fields["schema_version"] as? Json.Num)?.takeIf { it.isInt }?.text?.let { it.toIntOrNull() ?: Int.MAX_VALUE }
                ?: throw ManifestError("$where has no integer schema_version: not a sapiens-edge manifest. Re-export it.")
            if (version > SCHEMA_VERSION || version < 1) {
                throw ManifestVersionError(
                    "$where uses manifest schema $version; this kit reads schemas 1 to $SCHEMA_VERSION. " +
                        "Upgrade the app's sapiens-edge kit, or re-export the artifact with the sapiens-edge release " +
                        "the app was built for.")
            }
            val f = Fields(o, where)
            val norm = f.obj("normalization")
            val inputHw = f.ints(o, "input_hw")
            if (inputHw.size != 2 || inputHw.any { it <= 0 }) throw ManifestError("$where: input_hw $inputHw is not [height, width].")
            return Manifest(
                model = f.str(o, "model"), task = f.str(o, "task"), recipe = f.str(o, "recipe"),
                target = f.str(o, "target"), precision = f.str(o, "precision"),
                inputHw = inputHw[0] to inputHw[1],
                files = f.obj("files").fields.mapValues { (k, v) -> (v as? Json.Str)?.value ?: f.bad("files.$k") },
                modelFile = f.str(o, "model_file"),
                inputs = f.specs("inputs"), outputs = f.specs("outputs"),
                meanRgb = f.floats(norm, "mean_rgb", 3), stdRgb = f.floats(norm, "std_rgb", 3),
                taskMetadata = (o.fields["task_metadata"] as? Json.Obj) ?: Json.Obj(emptyMap()),
                exportOptions = (o.fields["export_options"] as? Json.Obj) ?: Json.Obj(emptyMap()),
                schemaVersion = version,
            )
        }
    }

    private class Fields(val root: Json.Obj, val where: String) {
        fun bad(field: String): Nothing =
            throw ManifestError("$where: field '$field' is missing or malformed; re-export the artifact.")

        fun str(o: Json.Obj, k: String): String = (o.fields[k] as? Json.Str)?.value ?: bad(k)
        fun obj(k: String): Json.Obj = root.fields[k] as? Json.Obj ?: bad(k)
        fun ints(o: Json.Obj, k: String): List<Int> =
            (o.fields[k] as? Json.Arr)?.items?.map { (it as? Json.Num)?.double?.toInt() ?: -1 } ?: bad(k)

        fun floats(o: Json.Obj, k: String, n: Int): FloatArray {
            val a = (o.fields[k] as? Json.Arr)?.items ?: bad("normalization.$k")
            if (a.size != n) bad("normalization.$k")
            return FloatArray(n) { (a[it] as? Json.Num)?.double?.toFloat() ?: bad("normalization.$k") }
        }

        fun specs(k: String): List<TensorSpec> {
            val a = (root.fields[k] as? Json.Arr)?.items ?: bad(k)
            if (a.isEmpty()) bad(k)
            return a.map { t ->
                val s = t as? Json.Obj ?: bad(k)
                // Dynamic dims are written as names or null by some exporters: -1 here.
                val shape = (s.fields["shape"] as? Json.Arr)?.items?.map { (it as? Json.Num)?.double?.toInt() ?: -1 } ?: bad("$k.shape")
                TensorSpec(str(s, "name"), shape, str(s, "dtype"), (s.fields["layout"] as? Json.Str)?.value ?: "NCHW")
            }
        }
    }
}

/** sha256 of the canonical JSON of `doc` without its digest field (manifest.py's manifest_digest). */
fun manifestDigest(doc: Json.Obj): String =
    sha256Hex(canonicalJson(Json.Obj(doc.fields.filterKeys { it != DIGEST_KEY })).toByteArray(Charsets.UTF_8))

fun sha256Hex(bytes: ByteArray): String =
    MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }

fun sha256File(file: File): String {
    val md = MessageDigest.getInstance("SHA-256")
    file.inputStream().use { input ->
        val buf = ByteArray(1 shl 20)
        while (true) {
            val n = input.read(buf)
            if (n < 0) break
            md.update(buf, 0, n)
        }
    }
    return md.digest().joinToString("") { "%02x".format(it) }
}

/**
 * Read an artifact folder's manifest and (by default) verify it like manifest.py's read_manifest: the
 * manifest's own digest (schema 2), every listed file present (the model file first) and its sha256.
 * `task`, when given, must be the artifact's task.
 */
fun readManifest(folder: File, task: String? = null, verify: Boolean = true): Manifest {
    val path = File(folder, MANIFEST_NAME)
    if (!folder.isDirectory) {
        throw ModelFileMissingError("Artifact folder not found: $folder. Copy the whole folder `sapiens-edge export` " +
            "wrote (e.g. adb push ARTIFACT /sdcard/Android/data/<app>/files/models/).")
    }
    if (!path.isFile) {
        throw ModelFileMissingError("$folder has no $MANIFEST_NAME: not a sapiens-edge artifact or an interrupted " +
            "copy. Copy the whole folder again.")
    }
    val doc = try {
        Json.parse(path.readText(Charsets.UTF_8))
    } catch (e: JsonSyntaxException) {
        throw ManifestError("$path is not valid JSON (${e.message}); the artifact is damaged, copy or re-export it.")
    }
    val manifest = Manifest.fromJson(doc, path.toString())
    if (task != null && manifest.task != task) {
        throw WrongTaskError("$folder holds a '${manifest.task}' model (${manifest.model}), but '$task' was asked " +
            "for. Pick the artifact exported for $task (sapiens-edge export sapiens2-0.4b-$task ...).")
    }
    if (manifest.task !in TASKS) {
        throw WrongTaskError("$path: task '${manifest.task}' is not one the kit decodes (${TASKS.joinToString()}).")
    }
    if (verify) {
        verifyManifest(path, doc as Json.Obj, manifest)
        verifyFiles(folder, manifest)
    }
    return manifest
}

private fun verifyManifest(path: File, doc: Json.Obj, manifest: Manifest) {
    val stored = (doc.fields[DIGEST_KEY] as? Json.Str)?.value
    if (stored == null && manifest.schemaVersion == 1) return // predates digests: only the files are checked
    if (stored != manifestDigest(doc)) {
        val why = if (stored == null) "has no $DIGEST_KEY" else "changed since export ($DIGEST_KEY mismatch)"
        throw ChecksumMismatchError("$path $why: the manifest was edited or damaged, so its normalization, task and " +
            "file list cannot be trusted. Copy the artifact folder again or re-export it.")
    }
}

private fun verifyFiles(folder: File, manifest: Manifest) {
    val names = listOf(manifest.modelFile) + manifest.files.keys.filter { it != manifest.modelFile }
    val missing = names.filter { !File(folder, it).isFile }
    if (missing.isNotEmpty()) {
        throw ModelFileMissingError("$folder is missing ${missing.joinToString()}; copy the whole artifact folder " +
            "(100+ MB model files are easy to truncate: compare sizes, or push it again).")
    }
    if (manifest.modelFile !in manifest.files) {
        throw ManifestError("$folder/$MANIFEST_NAME does not list the sha256 of its model file ${manifest.modelFile}; " +
            "re-export the artifact.")
    }
    val bad = manifest.files.filter { (name, digest) -> sha256File(File(folder, name)) != digest }.keys
    if (bad.isNotEmpty()) {
        throw ChecksumMismatchError("$folder: ${bad.joinToString()} changed since export (sha256 mismatch): the file " +
            "is corrupt, truncated or was swapped. Copy it again or re-export the artifact.")
    }
}
