package dev.megrezmobile.demo

import android.content.Context
import android.net.Uri
import android.os.StatFs
import androidx.documentfile.provider.DocumentFile
import dev.megrezmobile.core.BenchmarkContract
import dev.megrezmobile.core.BundleCheck
import dev.megrezmobile.core.BundleManifest
import dev.megrezmobile.core.Checksums
import java.io.File

/** A bundle folder that passed every check, ready to load. */
class VerifiedBundle(val dir: File, val manifest: BundleManifest, val warnings: List<String>)

/** A bundle that cannot be used; the message says what to do. */
class BundleProblem(message: String) : Exception(message)

/**
 * Where bundles live and how one is accepted: `adb push` into /data/local/tmp/megrez-mobile/<name> (the harness
 * does the same), or the system folder picker, copied into the app's own storage. Verification is the core's.
 */
object BundleStore {
    val adbRoot = File(BenchmarkContract.ADB_BUNDLE_ROOT)

    fun appRoot(context: Context) = File(context.filesDir, "bundles")

    /** Bundle folders found in both places (a folder holding manifest.json). */
    fun candidates(context: Context): List<File> = listOf(adbRoot, appRoot(context)).flatMap { root ->
        root.listFiles()?.filter { File(it, BundleManifest.FILE_NAME).isFile }.orEmpty()
    }.sortedBy { it.name }

    fun verify(dir: File, checksums: Boolean = true, progress: (String) -> Unit = {}): VerifiedBundle {
        val manifestFile = File(dir, BundleManifest.FILE_NAME)
        if (!manifestFile.canRead()) throw BundleProblem("$manifestFile cannot be read: push the whole bundle folder " +
            "(adb push BUNDLE ${adbRoot.path}/) or import it with the folder picker")
        val manifest = try { BundleManifest.parse(manifestFile.readText()) } catch (e: IllegalArgumentException) {
            throw BundleProblem(e.message ?: "manifest.json is malformed; re-export the bundle") }
        val refusals = BundleCheck.refusals(manifest, dir.list()?.toList().orEmpty())
        if (refusals.isNotEmpty()) throw BundleProblem(refusals.joinToString("\n"))
        val problems = Checksums.verifyBundle(dir, manifest, checksums) { file, done, total ->
            progress("checking $file: ${100 * done / maxOf(total, 1)} %")
        }
        if (problems.isNotEmpty()) throw BundleProblem("the bundle failed verification:\n" + problems.joinToString("\n") +
            "\nCopy it again; do not edit files inside a bundle.")
        val warnings = listOfNotNull(BundleCheck.versionWarning(manifest.executorchVersion, BuildConfig.EXECUTORCH_VERSION))
        return VerifiedBundle(dir, manifest, warnings)
    }

    /**
     * Copies the bundle folder the user picked (Storage Access Framework tree URI) into app storage: only the files its
     * manifest lists, after checking there is room for them, reporting progress; then verifies the copy.
     */
    fun import(context: Context, tree: Uri, progress: (String) -> Unit): VerifiedBundle {
        val source = DocumentFile.fromTreeUri(context, tree) ?: throw BundleProblem("that folder cannot be opened")
        val manifestDoc = source.findFile(BundleManifest.FILE_NAME)
            ?: throw BundleProblem("${source.name} has no manifest.json: pick the folder `megrez-mobile export` wrote")
        val manifestText = context.contentResolver.openInputStream(manifestDoc.uri)!!.use { it.readBytes().toString(Charsets.UTF_8) }
        val manifest = try { BundleManifest.parse(manifestText) } catch (e: IllegalArgumentException) {
            throw BundleProblem(e.message ?: "manifest.json is malformed") }
        val name = BundleManifest.plainFileName(source.name ?: "bundle", "folder name")
        val target = File(appRoot(context), name)
        val needed = manifest.files.sumOf { it.bytes }
        val free = StatFs(context.filesDir.path).availableBytes
        if (needed > free) throw BundleProblem("the bundle needs %.1f GB, the phone has %.1f GB free: free some space first"
            .format(needed / 1e9, free / 1e9))
        val partial = File(appRoot(context), ".$name.partial").apply { deleteRecursively(); mkdirs() }
        var copied = 0L
        for (entry in manifest.files) {
            val doc = source.findFile(entry.file) ?: throw BundleProblem("${entry.file} is missing from the picked folder")
            context.contentResolver.openInputStream(doc.uri)!!.use { input ->
                File(partial, entry.file).outputStream().use { out ->
                    val buffer = ByteArray(1 shl 20)
                    while (true) {
                        val n = input.read(buffer)
                        if (n < 0) break
                        out.write(buffer, 0, n)
                        copied += n
                        progress("copying ${entry.file}: ${100 * copied / maxOf(needed, 1)} %")
                    }
                }
            }
        }
        File(partial, BundleManifest.FILE_NAME).writeText(manifestText)
        target.deleteRecursively()
        if (!partial.renameTo(target)) throw BundleProblem("could not move the copied bundle into place")
        return verify(target, checksums = true, progress = progress)
    }
}
