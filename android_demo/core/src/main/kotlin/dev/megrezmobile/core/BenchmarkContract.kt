package dev.megrezmobile.core

/**
 * The benchmark entry point `megrez-mobile profile --device adb` drives (android_demo/README.md). Every name here
 * is defined once in the Python SDK, megrez_mobile/harness/app_contract.py; tests/test_android_core.py checks
 * that these constants equal it.
 */
object BenchmarkContract {
    const val APP_PACKAGE = "dev.megrezmobile.demo"
    const val BENCHMARK_ACTIVITY = ".BenchmarkActivity"
    const val EXTRA_BUNDLE_DIR = "bundle_dir"
    const val EXTRA_RESULT_PATH = "result_path"
    const val EXTRA_ARGS = "args"
    const val ADB_BUNDLE_ROOT = "/data/local/tmp/megrez-mobile"
    const val TMP_SUFFIX = ".tmp"
    const val ERROR_SUFFIX = ".error"
    const val RESULT_SCHEMA = "megrez-mobile/profile/1"

    /** The agent's options, in its --help order: name, kind ("int", "float", "int_list", "flag"). */
    val OPTIONS = listOf(
        "--reps" to "int", "--warmup" to "int", "--threads" to "int", "--prefill" to "int_list",
        "--decode" to "int", "--decode-contexts" to "int_list", "--audio-seconds" to "float", "--top-ops" to "int", "--no-per-op" to "flag",
        "--quick" to "flag",
    )

    /** Top-level keys of a result, as the Python agent writes them (the harness adds "device"). */
    val RESULT_KEYS = listOf("schema", "bundle", "host", "options", "prompts", "verify_s", "rss_before_load_mb",
        "slice_shapes", "metrics", "operators")

    fun prefillMetric(tokens: Int) = "prefill_tok_s@$tokens"
    fun decodeMetric(tokens: Int) = "decode_tok_s@$tokens"
    fun ttftMetric(prompt: String) = "ttft_s.$prompt"
    const val LOAD_METRIC = "load_s"
    const val VISION_METRIC = "vision_ms_per_slice"
    const val AUDIO_METRIC = "audio_ms_per_audio_s"
    const val PEAK_MEMORY_METRIC = "peak_rss_mb"
    val TTFT_PROMPTS = listOf("text", "image", "audio")
}

/** megrez_mobile/harness/profile.py `ProfileOptions`, parsed from the `args` extra exactly as the agent parses argv. */
data class BenchmarkOptions(
    val reps: Int = 5,
    val warmup: Int = 1,
    val threads: Int? = null,
    val prefillLengths: List<Int> = listOf(128, 512),
    val decodeTokens: Int = 128,
    val decodeContexts: List<Int> = listOf(128, 2048),
    val audioSeconds: Double = 30.0,
    val perOp: Boolean = true,
    val topOps: Int = 15,
) {
    fun toJson(): Map<String, Any?> = linkedMapOf("reps" to reps, "warmup" to warmup, "threads" to threads,
        "prefill_lengths" to prefillLengths, "decode_tokens" to decodeTokens, "decode_contexts" to decodeContexts, "audio_seconds" to audioSeconds,
        "per_op" to perOp, "top_ops" to topOps)

    companion object {
        /** `--quick`: ProfileOptions.quick's sizes; explicit --reps/--warmup win over it (as in the agent). */
        private fun quick(base: BenchmarkOptions) = base.copy(prefillLengths = listOf(16, 64), decodeTokens = 16,
            decodeContexts = emptyList(), audioSeconds = 5.0)

        fun parse(args: List<String>): BenchmarkOptions {
            val known = BenchmarkContract.OPTIONS.toMap()
            val values = HashMap<String, String>()
            var i = 0
            while (i < args.size) {
                val a = args[i]
                val (name, inline) = if (a.startsWith("--") && '=' in a) a.substringBefore('=') to a.substringAfter('=') else a to null
                val kind = known[name] ?: throw IllegalArgumentException("unknown benchmark argument \"$a\"; " +
                    "known: ${known.keys.joinToString()}")
                if (kind == "flag") { values[name] = "true"; i++; continue }
                val v = inline ?: args.getOrNull(i + 1) ?: throw IllegalArgumentException("$name needs a value")
                values[name] = v
                i += if (inline != null) 1 else 2
            }
            fun int(n: String) = values[n]?.let { it.toIntOrNull() ?: throw IllegalArgumentException("$n: \"$it\" is not an integer") }
            val quick = values["--quick"] != null
            val perOp = values["--no-per-op"] == null
            val d = BenchmarkOptions()
            var o = if (quick) quick(d.copy(reps = 2, warmup = 1)) else d.copy(
                prefillLengths = values["--prefill"]?.split(',')?.filter { it.isNotEmpty() }?.map {
                    it.toIntOrNull() ?: throw IllegalArgumentException("--prefill: \"$it\" is not an integer") } ?: d.prefillLengths,
                decodeTokens = int("--decode") ?: d.decodeTokens,
                audioSeconds = values["--audio-seconds"]?.let { it.toDoubleOrNull()
                    ?: throw IllegalArgumentException("--audio-seconds: \"$it\" is not a number") } ?: d.audioSeconds,
                topOps = int("--top-ops") ?: d.topOps)
            o = o.copy(threads = int("--threads"), perOp = perOp)
            values["--decode-contexts"]?.let { v -> o = o.copy(decodeContexts = v.split(',').filter { it.isNotEmpty() }.map {
                it.toIntOrNull() ?: throw IllegalArgumentException("--decode-contexts: \"$it\" is not an integer") }) }
            int("--reps")?.let { o = o.copy(reps = it) }
            int("--warmup")?.let { o = o.copy(warmup = it) }
            return o
        }

        /** The `args` extra: a JSON array of strings. */
        fun parseExtra(json: String): BenchmarkOptions {
            val list = Json.parse(json) as? List<*> ?: throw IllegalArgumentException("args must be a JSON array of strings")
            return parse(list.map { it as? String ?: throw IllegalArgumentException("args must be a JSON array of strings") })
        }
    }
}

/** Repeated measurements of one quantity, written as profile.py's `Stat.to_dict`. */
data class Stat(val unit: String, val better: String, val samples: List<Double>) {
    init { require(samples.isNotEmpty()) { "a statistic needs at least one sample" } }

    val median: Double get() = samples.sorted().let { s ->
        if (s.size % 2 == 1) s[s.size / 2] else (s[s.size / 2 - 1] + s[s.size / 2]) / 2 }

    fun toJson(): Map<String, Any?> = linkedMapOf("median" to median, "min" to samples.min(), "max" to samples.max(),
        "spread" to samples.max() - samples.min(), "n" to samples.size, "unit" to unit, "better" to better,
        "samples" to samples)
}

/** Repeats `fn` after warm-up runs, as profile.py's `repeat`. */
fun repeatMeasured(options: BenchmarkOptions, fn: () -> Double): List<Double> {
    repeat(options.warmup) { fn() }
    return List(maxOf(1, options.reps)) { fn() }
}
