package dev.megrezmobile.core

/**
 * One answer's numbers: the runner's stats JSON (`LlmCallback.onStats`, ExecuTorch's stats_to_json_string, epoch
 * milliseconds) plus what the runner does not time: image and audio encoding (the app times its prefill calls).
 */
data class AnswerStats(
    val promptTokens: Long,
    val generatedTokens: Long,
    val timeToFirstTokenMs: Long,
    val prefillTokPerS: Double,
    val decodeTokPerS: Double,
    val imageEncodeMs: Long = 0,
    val audioEncodeMs: Long = 0,
    val peakMemoryMb: Double = 0.0,
) {
    /** One line for the chat UI. */
    fun summary(): String = buildString {
        append("TTFT %.2f s · prefill %.1f tok/s · decode %.1f tok/s".format(timeToFirstTokenMs / 1000.0, prefillTokPerS, decodeTokPerS))
        if (imageEncodeMs > 0) append(" · image %.2f s".format(imageEncodeMs / 1000.0))
        if (audioEncodeMs > 0) append(" · audio %.2f s".format(audioEncodeMs / 1000.0))
        if (peakMemoryMb > 0) append(" · peak %.0f MB".format(peakMemoryMb))
    }

    fun toJson(): Map<String, Any?> = linkedMapOf("prompt_tokens" to promptTokens, "generated_tokens" to generatedTokens,
        "ttft_ms" to timeToFirstTokenMs, "prefill_tok_s" to prefillTokPerS, "decode_tok_s" to decodeTokPerS,
        "image_encode_ms" to imageEncodeMs, "audio_encode_ms" to audioEncodeMs, "peak_memory_mb" to peakMemoryMb)

    companion object {
        /**
         * From the runner's stats JSON. In the multimodal runner, the first token is sampled at the end of prefill and
         * not counted in num_generated_tokens; decode speed is over the tokens after it.
         */
        fun fromRunnerJson(json: String, imageEncodeMs: Long = 0, audioEncodeMs: Long = 0, peakMemoryMb: Double = 0.0): AnswerStats {
            val o = JsonObject.parse(json, "runner stats")
            val start = o.long("inference_start_ms")
            val promptEnd = o.long("prompt_eval_end_ms")
            val first = o.long("first_token_ms")
            val end = o.long("inference_end_ms")
            val prompt = o.long("num_prompt_tokens")
            val generated = o.long("num_generated_tokens")
            val prefillS = (promptEnd - start).coerceAtLeast(1) / 1000.0
            val decodeS = (end - first).coerceAtLeast(1) / 1000.0
            return AnswerStats(prompt, generated, first - start, prompt / prefillS, generated / decodeS,
                imageEncodeMs, audioEncodeMs, peakMemoryMb)
        }
    }
}
