package io.sapiensedge.demo

import android.content.Context
import io.sapiensedge.kit.ChecksumMismatchError
import io.sapiensedge.kit.MANIFEST_NAME
import io.sapiensedge.kit.Manifest
import io.sapiensedge.kit.readManifest
import io.sapiensedge.kit.sha256File
import java.io.File
import java.net.URL

/**
 * Artifacts live in app storage, never in the APK: <external files>/models/<name>/ holds a whole folder that
 * `sapiens-edge export` wrote (model file + manifest.json + README.md). Put one there with
 *   adb push out/pose-xnnpack-int8 /sdcard/Android/data/io.sapiensedge.demo/files/models/
 * or let [download] fetch it on first run (each file checked against the manifest's sha256).
 */
class ModelStore(context: Context) {
    val root: File = File(context.getExternalFilesDir(null), "models").apply { mkdirs() }

    /** Folders with a manifest.json, newest first. */
    fun list(): List<File> = root.listFiles { f -> File(f, MANIFEST_NAME).isFile }.orEmpty().sortedByDescending { it.lastModified() }

    /** The manifest, verified (digest and every file's sha256; the kit's typed errors say what is wrong). */
    fun open(folder: File): Manifest = readManifest(folder)

    /**
     * Download an artifact folder published at `baseUrl` (its manifest.json, then every file it lists), into a
     * temporary folder that becomes models/<name> only once every sha256 matched. Call off the main thread.
     */
    fun download(baseUrl: String, name: String): File {
        val tmp = File(root, ".$name.part").apply { deleteRecursively(); mkdirs() }
        fun fetch(rel: String): File = File(tmp, rel).also { f ->
            f.parentFile?.mkdirs()
            URL("$baseUrl/$rel").openStream().use { input -> f.outputStream().use { input.copyTo(it, 1 shl 20) } }
        }
        fetch(MANIFEST_NAME)
        val manifest = readManifest(tmp, verify = false)
        for ((rel, digest) in manifest.files) {
            if (sha256File(fetch(rel)) != digest) {
                tmp.deleteRecursively()
                throw ChecksumMismatchError("$baseUrl/$rel arrived with another sha256 than its manifest lists; the download " +
                    "was cut or the server holds another file. Try again or adb push the folder.")
            }
        }
        readManifest(tmp) // the manifest's own digest too
        val dest = File(root, name)
        dest.deleteRecursively()
        check(tmp.renameTo(dest)) { "cannot move $tmp to $dest" }
        return dest
    }
}
