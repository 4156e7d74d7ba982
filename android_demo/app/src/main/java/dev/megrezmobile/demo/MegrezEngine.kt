package dev.megrezmobile.demo

import dev.megrezmobile.core.AnswerStats
import dev.megrezmobile.core.RunnerInput
import dev.megrezmobile.core.RunnerPlan
import dev.megrezmobile.core.Utf8PieceBuffer
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.pytorch.executorch.extension.llm.LlmCallback
import org.pytorch.executorch.extension.llm.LlmModule
import java.io.File
import java.nio.ByteBuffer

/** A runtime failure in words: what happened and what to do. */
class EngineError(message: String) : Exception(message)

/**
 * The ExecuTorch side, kept thin: `LlmModule(MODEL_TYPE_MULTIMODAL)` for the chat (the stock MultimodalRunner) and a
 * `Module` for the bundle's `audio_preprocessor` method, which the runner never calls. Every call runs on the
 * caller's (one, background) thread: LlmModule refuses calls from inside its own callbacks.
 */
class MegrezEngine(private val bundle: VerifiedBundle) : AutoCloseable {
    private val manifest = bundle.manifest
    private var llm: LlmModule? = null
    private var audioModule: Module? = null

    /** Positions the runner's KV cache holds (prompt + answers so far): the next turn starts here. */
    var positions = 0L
        private set

    fun load() {
        val model = File(bundle.dir, manifest.program.file).path
        val tokenizer = File(bundle.dir, manifest.tokenizer.file).path
        // Temperature 0: greedy, the SDK's default (Bundle.chat, validate), so answers compare.
        val module = LlmModule(LlmModule.MODEL_TYPE_MULTIMODAL, model, tokenizer, 0.0f)
        val status = try { module.load() } catch (e: Throwable) { throw loadFailure(e.message ?: e.toString()) }
        if (status != 0) throw loadFailure("ExecuTorch error code $status")
        llm = module
        if ("audio_preprocessor" in manifest.methodNames) {
            audioModule = Module.load(model, Module.LOAD_MODE_MMAP)
        }
    }

    private fun loadFailure(detail: String) = EngineError(
        "the model did not load ($detail). If the phone is low on memory, close other apps and try again; if the " +
            "bundle was exported for another backend, export it with the xnnpack-8da4w recipe.")

    /**
     * Feeds `plan` in exactly the core's order (prefillPrompt / prefillImages / audio_preprocessor + prefillAudio), then
     * generates from its final text input. `onPiece` gets only complete characters; returns the answer's stats.
     */
    fun answer(plan: RunnerPlan, maxNewTokens: Int, onPiece: (String) -> Unit): AnswerStats {
        val module = llm ?: throw EngineError("no model is loaded; pick a bundle first")
        val room = manifest.maxContext - positions - plan.maxTokens
        if (room < 1) throw EngineError("this message may not fit the remaining context (${manifest.maxContext - positions} " +
            "of ${manifest.maxContext} positions left): start a new chat or send less")
        // The runner prefills each text input in one call and does not chunk (executorch_notes §1.3).
        plan.inputs.filterIsInstance<RunnerInput.Text>().firstOrNull { it.maxTokens > manifest.maxSeqLen }?.let {
            throw EngineError("this message is too long for one prefill of this bundle (${manifest.maxSeqLen} tokens, " +
                "counted safely as UTF-8 bytes): split it into several messages")
        }
        var imageMs = 0L
        var audioMs = 0L
        val inputs = plan.inputs
        val last = inputs.last() as? RunnerInput.Text ?: throw EngineError("a plan must end with text (a bug)")
        for (input in inputs.dropLast(1)) {
            val t0 = System.nanoTime()
            when (input) {
                is RunnerInput.Text -> module.prefillPrompt(input.text)
                is RunnerInput.Image -> {
                    val chw = input.pixels.toChw()
                    val buffer = ByteBuffer.allocateDirect(chw.size).put(chw).apply { rewind() }
                    module.prefillImages(buffer, input.width, input.height, 3)
                    imageMs += (System.nanoTime() - t0) / 1_000_000
                }
                is RunnerInput.Audio -> {
                    val mel = logMel(input.waveform)
                    module.prefillAudio(mel.data, 1, mel.bins, mel.frames)
                    audioMs += (System.nanoTime() - t0) / 1_000_000
                }
            }
        }
        val utf8 = Utf8PieceBuffer()
        var answerStats: AnswerStats? = null
        var error: String? = null
        // seqLen caps the whole context (positions so far + this prompt + the answer); the API's default 128 would not.
        val seqLen = minOf(manifest.maxContext.toLong(), positions + plan.maxTokens + maxNewTokens).toInt()
        module.generate(last.text, seqLen, object : LlmCallback {
            // The JNI layer already buffers to valid UTF-8; the core's buffer keeps that true for any binding.
            override fun onResult(result: String) = onPiece(utf8.push(result.toByteArray(Charsets.UTF_8)))
            override fun onStats(stats: String) {
                runCatching { AnswerStats.fromRunnerJson(stats, imageMs, audioMs, peakMemoryMb()) }.onSuccess { answerStats = it }
            }
            override fun onError(errorCode: Int, message: String) { error = "$message (code $errorCode)" }
        }, false)
        onPiece(utf8.flush())
        error?.let { throw EngineError(runtimeAdvice(it)) }
        val result = answerStats ?: throw EngineError("the runtime returned no statistics; the answer may be incomplete")
        // The runner holds the prompt and every answer token but the last one it emitted (never fed back).
        positions = result.promptTokens + result.generatedTokens
        return result
    }

    private class Mel(val data: FloatArray, val bins: Int, val frames: Int)

    private fun logMel(wave: FloatArray): Mel {
        val module = audioModule ?: throw EngineError("this bundle has no audio_preprocessor: re-export it with a current " +
            "megrez-mobile to use audio")
        val out = module.execute("audio_preprocessor", EValue.from(Tensor.fromBlob(wave, longArrayOf(wave.size.toLong()))))
        val tensor = out[0].toTensor()
        val shape = tensor.shape()
        return Mel(tensor.getDataAsFloatArray(), shape[1].toInt(), shape[2].toInt())
    }

    private fun runtimeAdvice(message: String): String = when {
        "memory" in message.lowercase() || "alloc" in message.lowercase() ->
            "the phone ran out of memory ($message). Close other apps, use fewer images or shorter audio, or start a new chat."
        "Max new tokens" in message -> "the conversation filled the context ($message): start a new chat."
        else -> "the model failed while answering ($message). Start a new chat; if it happens again, check `adb logcat`."
    }

    fun stop() { llm?.stop() }

    /** New chat: the runner forgets the conversation (its KV cache position goes back to 0). */
    fun reset() { llm?.resetContext(); positions = 0 }

    override fun close() {
        llm?.close(); llm = null
        audioModule?.destroy(); audioModule = null
    }

    companion object {
        /** The process's peak resident memory (VmHWM), the Android twin of the agent's ru_maxrss. */
        fun peakMemoryMb(): Double = runCatching {
            File("/proc/self/status").readLines().first { it.startsWith("VmHWM:") }
                .split(Regex("\\s+"))[1].toDouble() / 1024
        }.getOrDefault(0.0)
    }
}
