package dev.megrezmobile.core

/** Whether this app's runtime can run a bundle at all: said before loading, in words that say what to do. */
object BundleCheck {
    /** Backends in `org.pytorch:executorch-android` (the XNNPACK flavour): XNNPACK plus ExecuTorch's CPU kernels. */
    val AAR_BACKENDS = setOf("xnnpack", "portable")

    fun refusals(manifest: BundleManifest, filesInBundle: Collection<String>): List<String> {
        val out = mutableListOf<String>()
        val foreign = manifest.methods.filter { it.backend !in AAR_BACKENDS }
        if (foreign.isNotEmpty()) {
            val backends = foreign.map { it.backend }.toSortedSet().joinToString()
            out += "this bundle needs the $backends backend (methods ${foreign.joinToString { it.name }}), which " +
                "this app's ExecuTorch library does not contain: export it with the xnnpack-8da4w recipe"
        }
        val ptd = (manifest.dataFiles + filesInBundle.filter { it.endsWith(".ptd") }).toSortedSet()
        if (ptd.isNotEmpty()) out += "this bundle keeps weights in ${ptd.joinToString()}; Android's multimodal " +
            "runner ignores .ptd files, so export a self-contained model.pte (no external weights)"
        return out
    }

    /** A warning when the bundle was made by a newer ExecuTorch than the app's (no compatibility promise that way). */
    fun versionWarning(bundleVersion: String, appVersion: String): String? {
        val b = numbers(bundleVersion)
        val a = numbers(appVersion)
        for (i in 0 until maxOf(a.size, b.size)) {
            val x = b.getOrElse(i) { 0 }
            val y = a.getOrElse(i) { 0 }
            if (x != y) return if (x > y) "this bundle was exported with ExecuTorch $bundleVersion, newer than the " +
                "app's $appVersion; it may fail to load: update the app or export with ExecuTorch $appVersion" else null
        }
        return null
    }

    private fun numbers(v: String): List<Int> =
        v.substringBefore('+').split('.').map { part -> part.takeWhile { it.isDigit() }.toIntOrNull() ?: 0 }
}
