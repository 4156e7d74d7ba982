package dev.megrezmobile.demo

import android.content.Context
import android.os.Build
import dev.megrezmobile.core.BenchmarkContract as C
import dev.megrezmobile.core.BenchmarkOptions
import dev.megrezmobile.core.ChatMessage
import dev.megrezmobile.core.Content
import dev.megrezmobile.core.ExifOrientation
import dev.megrezmobile.core.ImagePrep
import dev.megrezmobile.core.Neutralize
import dev.megrezmobile.core.RgbImage
import dev.megrezmobile.core.RunnerPlanner
import dev.megrezmobile.core.Stat
import dev.megrezmobile.core.repeatMeasured
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File
import java.util.Random

/**
 * What megrez_mobile/harness/profile.py measures, with its schema and metric names (core BenchmarkContract, checked
 * against the SDK by tests/test_android_core.py): load, prefill and decode through the program's own methods,
 * time to first token through LlmModule (preprocessing included), the encoders alone, peak memory.
 * "operators" stays empty: the per-operator breakdown needs an ETDump-enabled runtime, which the AAR is not.
 */
class Benchmark(private val context: Context, private val dir: File, private val options: BenchmarkOptions,
                private val log: (String) -> Unit) {

    private fun seconds(block: () -> Unit): Double { val t = System.nanoTime(); block(); return (System.nanoTime() - t) / 1e9 }

    fun run(): Map<String, Any?> {
        val rssBefore = MegrezEngine.peakMemoryMb()
        lateinit var bundle: VerifiedBundle
        val verifyS = seconds { bundle = BundleStore.verify(dir, checksums = true) }
        val m = bundle.manifest
        val model = File(dir, m.program.file).path
        val metrics = LinkedHashMap<String, Stat>()

        // --- the program's methods, as the agent runs them ------------------------------------------------------
        lateinit var module: Module
        metrics[C.LOAD_METRIC] = Stat("s", "lower", listOf(seconds {
            module = Module.load(model, Module.LOAD_MODE_MMAP, options.threads ?: 0)
            for (method in m.methodNames) module.loadMethod(method)  // XNNPACK packs weights here: part of load
        }))
        val vocab = (m.vocabSize ?: 1000).toLong()  // ordinary ids: what they are does not change the cost
        val random = Random(0)
        fun decodeAt(ids: LongArray, position: Long): Tensor {
            val embeds = module.execute("token_embedding", EValue.from(Tensor.fromBlob(ids, longArrayOf(1, ids.size.toLong()))))[0]
            return module.execute("text_decoder", embeds, EValue.from(Tensor.fromBlob(longArrayOf(position), longArrayOf(1))))[0].toTensor()
        }
        for (n in options.prefillLengths) {
            log("prefill $n tokens x ${options.reps}")
            val ids = LongArray(n) { random.nextInt(vocab.toInt()).toLong() }
            metrics[C.prefillMetric(n)] = Stat("tok/s", "higher", repeatMeasured(options) { n / seconds { decodeAt(ids, 0) } })
        }
        log("decode ${options.decodeTokens} tokens x ${options.reps}")
        metrics[C.decodeMetric(options.decodeTokens)] = Stat("tok/s", "higher", repeatMeasured(options) {
            var logits = decodeAt(longArrayOf(1), 0)
            options.decodeTokens / seconds {
                for (pos in 1..options.decodeTokens) logits = decodeAt(longArrayOf(argmax(logits.getDataAsFloatArray())), pos.toLong())
            }
        })
        val image = sampleImage()
        val sliced = ImagePrep.slice(image, m.frontEnd.image)
        val slices = listOf(sliced.source) + sliced.slices
        log("vision encoder: ${slices.size} slices x ${options.reps}")
        metrics[C.VISION_METRIC] = Stat("ms", "lower", repeatMeasured(options) {
            1000 * seconds { slices.forEach { s -> module.execute("vision_encoder", EValue.from(
                Tensor.fromBlobUnsigned(s.toChw(), longArrayOf(1, 3, s.height.toLong(), s.width.toLong())))) } } / slices.size
        })
        val clip = sampleAudio(m.frontEnd.audio.samplingRate)
        val mel = module.execute("audio_preprocessor", EValue.from(Tensor.fromBlob(clip, longArrayOf(clip.size.toLong()))))[0]
        log("audio encoder: ${options.audioSeconds} s of audio x ${options.reps}")
        metrics[C.AUDIO_METRIC] = Stat("ms", "lower", repeatMeasured(options) {
            1000 * seconds { module.execute("audio_encoder", mel) } / options.audioSeconds
        })
        module.destroy()

        // --- time to first token through the app's own path (LlmModule, preprocessing included) -----------------
        val planner = RunnerPlanner(m.frontEnd, Neutralize.addedTokens(File(dir, m.tokenizer.file).readText()))
        val prompts = linkedMapOf(
            "text" to Content("Write a short poem about the sea, then explain it in one sentence."),
            "image" to Content("Describe this image in detail.", image = image),
            "audio" to Content("Transcribe the audio, then summarise it.", audio16k = clip))
        val promptInfo = LinkedHashMap<String, Any?>()
        MegrezEngine(bundle).use { engine ->
            engine.load()
            for ((kind, content) in prompts) {
                log("time to first token, $kind prompt x ${options.reps}")
                var tokens = 0L
                metrics[C.ttftMetric(kind)] = Stat("s", "lower", repeatMeasured(options) {
                    engine.reset()
                    val start = System.nanoTime()
                    var first = 0L
                    val plan = planner.plan(listOf(ChatMessage("user", content)))  // slicing / split timed too
                    val stats = engine.answer(plan, 1) { if (first == 0L && it.isNotEmpty()) first = System.nanoTime() }
                    tokens = stats.promptTokens
                    ((if (first > 0) first else System.nanoTime()) - start) / 1e9
                })
                promptInfo[kind] = linkedMapOf("tokens" to tokens,
                    "image_tokens" to if (kind == "image") slices.size * m.frontEnd.image.imageFeatureSize else 0,
                    "audio_seconds" to if (kind == "audio") options.audioSeconds else 0.0)
            }
        }
        metrics[C.PEAK_MEMORY_METRIC] = Stat("MB", "lower", listOf(MegrezEngine.peakMemoryMb()))

        return linkedMapOf(
            "schema" to C.RESULT_SCHEMA,
            "bundle" to linkedMapOf("name" to dir.name, "recipe" to m.recipeName, "backend" to m.backend,
                "pte_bytes" to File(model).length(), "max_context" to m.maxContext,
                "methods" to m.methods.associate { it.name to mapOf("backend" to it.backend) }),
            "host" to linkedMapOf("hostname" to Build.MODEL, "machine" to (Build.SUPPORTED_ABIS.firstOrNull() ?: "?"),
                "system" to "Android ${Build.VERSION.RELEASE}", "cpu_count" to Runtime.getRuntime().availableProcessors(),
                "executorch" to BuildConfig.EXECUTORCH_VERSION, "megrez_mobile" to BuildConfig.VERSION_NAME,
                "cpu_model" to Build.HARDWARE),
            "options" to options.toJson(),
            "prompts" to promptInfo,
            "verify_s" to verifyS,
            "rss_before_load_mb" to rssBefore,
            "slice_shapes" to slices.map { listOf(it.height, it.width) },
            "metrics" to metrics.mapValues { it.value.toJson() },
            "operators" to emptyList<Any>(),
        )
    }

    private fun argmax(v: FloatArray): Long { var best = 0; for (i in v.indices) if (v[i] > v[best]) best = i; return best.toLong() }

    /** The SDK's sample image (app assets = megrez_mobile/assets), decoded and oriented like any photo. */
    private fun sampleImage(): RgbImage {
        val bytes = context.assets.open("sample_image.jpg").use { it.readBytes() }
        val bmp = android.graphics.BitmapFactory.decodeByteArray(bytes, 0, bytes.size)
        val argb = IntArray(bmp.width * bmp.height).also { bmp.getPixels(it, 0, bmp.width, 0, 0, bmp.width, bmp.height) }
        return ExifOrientation.apply(RgbImage.fromArgb(bmp.width, bmp.height, argb), ExifOrientation.readJpeg(bytes))
    }

    /** The sample speech clip repeated to `audio_seconds`, as the agent's np.resize does. */
    private fun sampleAudio(rate: Int): FloatArray {
        val tmp = File(context.cacheDir, "sample_audio.m4a")
        context.assets.open("sample_audio.m4a").use { input -> tmp.outputStream().use { input.copyTo(it) } }
        val wave = Media.loadAudioFile(context, android.net.Uri.fromFile(tmp), bundleAudioConfig(rate))
        val n = (options.audioSeconds * rate).toInt()
        return FloatArray(n) { wave[it % wave.size] }
    }

    private fun bundleAudioConfig(rate: Int) = dev.megrezmobile.core.AudioConfig(samplingRate = rate)
}
