package dev.megrezmobile.demo

import android.app.Activity
import android.os.Build
import android.os.Bundle
import android.util.Log
import dev.megrezmobile.core.BenchmarkContract
import dev.megrezmobile.core.BenchmarkOptions
import dev.megrezmobile.core.Json
import java.io.File

/**
 * `megrez-mobile profile --device adb`'s entry point (android_demo/README.md, "Benchmark entry point"):
 * extras bundle_dir, result_path, args (a JSON array of the agent's options) in; one result JSON out, written to
 * RESULT.tmp then renamed to RESULT; a caught failure writes one line to RESULT.error. Runs off the main thread
 * and finishes the activity when done (the harness polls for the file while the process lives).
 */
class BenchmarkActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val bundleDir = intent.getStringExtra(BenchmarkContract.EXTRA_BUNDLE_DIR)
        val resultPath = intent.getStringExtra(BenchmarkContract.EXTRA_RESULT_PATH)
        val args = intent.getStringExtra(BenchmarkContract.EXTRA_ARGS) ?: "[]"
        if (resultPath == null || bundleDir == null) {
            Log.e(TAG, "missing extras: start me with --es bundle_dir DIR --es result_path FILE --es args JSON")
            finish()
            return
        }
        val result = File(resultPath)
        Thread({
            try {
                result.parentFile?.mkdirs()
                val options = BenchmarkOptions.parseExtra(args)
                val json = Benchmark(this, File(bundleDir), options) { Log.i(TAG, it) }.run()
                val tmp = File(result.path + BenchmarkContract.TMP_SUFFIX)
                tmp.writeText(Json.canonical(json))
                if (!tmp.renameTo(result)) throw IllegalStateException("could not rename $tmp to $result")
            } catch (e: Throwable) {  // OutOfMemoryError included: the harness must get a line, not a silent death
                Log.e(TAG, "benchmark failed", e)
                runCatching {
                    File(result.path + BenchmarkContract.ERROR_SUFFIX).writeText(
                        "${e::class.java.simpleName}: ${e.message ?: "no message"} (device ${Build.MODEL})".replace('\n', ' ') + "\n")
                }
            } finally {
                runOnUiThread { finish() }
            }
        }, "megrez-benchmark").start()
    }

    companion object { const val TAG = "MegrezBenchmark" }
}
