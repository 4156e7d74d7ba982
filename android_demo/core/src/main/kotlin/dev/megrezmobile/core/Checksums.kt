package dev.megrezmobile.core

import java.io.File
import java.io.InputStream
import java.security.MessageDigest

/** Streamed sha256 and the bundle check the app runs before loading (megrez_mobile/bundle.py `verify_files`). */
object Checksums {
    private const val BLOCK = 1 shl 20

    /** sha256 of everything `input` yields, in 1 MiB blocks (a 3 GB .pte never sits in memory); `progress(bytesSoFar)`. */
    fun sha256(input: InputStream, progress: (Long) -> Unit = {}): String {
        val digest = MessageDigest.getInstance("SHA-256")
        val buffer = ByteArray(BLOCK)
        var total = 0L
        while (true) {
            val n = input.read(buffer)
            if (n < 0) break
            digest.update(buffer, 0, n)
            total += n
            progress(total)
        }
        return digest.digest().joinToString("") { "%02x".format(it) }
    }

    fun sha256(file: File, progress: (Long) -> Unit = {}): String = file.inputStream().use { sha256(it, progress) }

    /**
     * Problems with the bundle's files, one readable line each (empty: all good). Sizes first for every file (cheap),
     * then checksums only when every size is right.
     */
    fun verifyBundle(dir: File, manifest: BundleManifest, checksums: Boolean = true,
                     progress: (file: String, done: Long, total: Long) -> Unit = { _, _, _ -> }): List<String> {
        val problems = mutableListOf<String>()
        for (entry in manifest.files) {
            val f = File(dir, entry.file)
            when {
                !f.isFile -> problems += "${entry.file}: missing"
                f.length() != entry.bytes -> problems += "${entry.file}: ${f.length()} bytes, the manifest says " +
                    "${entry.bytes} (truncated or replaced)"
            }
        }
        if (problems.isNotEmpty() || !checksums) return problems
        for (entry in manifest.files) {
            val actual = sha256(File(dir, entry.file)) { done -> progress(entry.file, done, entry.bytes) }
            if (actual != entry.sha256) problems += "${entry.file}: sha256 differs from the manifest (corrupted or modified)"
        }
        return problems
    }
}
