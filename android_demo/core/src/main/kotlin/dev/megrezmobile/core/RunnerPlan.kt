package dev.megrezmobile.core

/** What a message carries; the image is decoded and upright (EXIF applied), the audio mono at the model rate. */
class Content(val text: String? = null, val image: RgbImage? = null, val audio16k: FloatArray? = null)

class ChatMessage(val role: String, val content: Content)

/** A turn appended to a conversation whose KV cache the runner kept (see plan.py `Continuation`). */
data class Continuation(val imagesBefore: Int = 0, val audioBefore: Int = 0, val pendingAnswer: String = "")

/** One input of the stock MultimodalRunner, in order: `prefillPrompt`, `prefillImages`, or audio_preprocessor + `prefillAudio`. */
sealed class RunnerInput {
    abstract fun toJson(): Map<String, Any?>

    /** Positions this input fills in the context (text: not known without the tokenizer, see `maxTokens`). */
    abstract val maxTokens: Int

    data class Text(val text: String) : RunnerInput() {
        override fun toJson() = mapOf("kind" to "text", "text" to text)
        /** Byte-level BPE never makes more tokens than UTF-8 bytes: a safe upper bound for overflow warnings. */
        override val maxTokens: Int get() = text.toByteArray(Charsets.UTF_8).size
    }

    class Image(val image: Int, val part: String, val row: Int?, val col: Int?, val pixels: RgbImage, val tokens: Int) : RunnerInput() {
        val width get() = pixels.width
        val height get() = pixels.height
        override val maxTokens get() = tokens
        override fun toJson(): Map<String, Any?> = linkedMapOf<String, Any?>("kind" to "image", "image" to image,
            "part" to part, "width" to width, "height" to height, "tokens" to tokens).also {
            if (row != null) { it["row"] = row; it["col"] = col }
        }
    }

    class Audio(val audio: Int, val clip: Int, val info: AudioClip, val waveform: FloatArray) : RunnerInput() {
        override val maxTokens get() = info.tokens
        override fun toJson(): Map<String, Any?> = mapOf("kind" to "audio", "audio" to audio, "clip" to clip,
            "first_sample" to info.firstSample, "samples" to info.samples, "mel_frames" to info.melFrames,
            "tokens" to info.tokens)
    }
}

class RunnerPlan(val inputs: List<RunnerInput>, val images: List<Map<String, Any?>>, val audio: List<Map<String, Any?>>) {
    fun toJson(): Map<String, Any?> = mapOf("schema" to SCHEMA, "inputs" to inputs.map { it.toJson() },
        "images" to images, "audio" to audio)

    /** An upper bound of the positions this plan adds (exact for media, UTF-8 bytes for text). */
    val maxTokens: Int get() = inputs.sumOf { it.maxTokens }
    val imageCount: Int get() = images.size
    val audioCount: Int get() = audio.size

    companion object { const val SCHEMA = "megrez-mobile/runner-plan/1" }
}

/** A message the template cannot take, named by its index (plan.py / processor.py `_validate`). */
class ChatFormatError(message: String) : IllegalArgumentException(message)

/**
 * The chat template rendered as runner inputs: megrez_mobile/processing/plan.py `runner_plan`, step for step.
 * `addedTokens`: tokenizer.json's added-token strings, for `Neutralize`.
 */
class RunnerPlanner(private val frontEnd: FrontEndConfig, private val addedTokens: List<String>) {
    private val mk = frontEnd.markers

    private class Builder {
        val inputs = ArrayList<RunnerInput>()
        private val text = StringBuilder()
        fun text(s: String) { text.append(s) }
        fun flush() { if (text.isNotEmpty()) inputs += RunnerInput.Text(text.toString()); text.setLength(0) }
        fun media(input: RunnerInput) { flush(); inputs += input }
    }

    fun plan(messages: List<ChatMessage>, continuation: Continuation? = null, addGenerationPrompt: Boolean = true): RunnerPlan {
        validate(messages, continuation != null)
        val b = Builder()
        val images = ArrayList<Map<String, Any?>>()
        val audio = ArrayList<Map<String, Any?>>()
        val safe = { s: String -> Neutralize.apply(s, addedTokens) }
        var imageIndex = continuation?.imagesBefore ?: 0
        var audioIndex = continuation?.audioBefore ?: 0
        val (roleStart, roleEnd, turnEnd) = Triple(Markers.ROLE_START, Markers.ROLE_END, Markers.TURN_END)
        if (continuation != null) {
            b.text(safe(continuation.pendingAnswer) + turnEnd)
        } else if (messages[0].role != "system" && !frontEnd.defaultSystemPrompt.isNullOrEmpty()) {
            b.text("${roleStart}system$roleEnd${safe(frontEnd.defaultSystemPrompt)}$turnEnd")
        }
        for (msg in messages) {
            val content = msg.content
            b.text("$roleStart${msg.role}$roleEnd")
            var mediaBefore = false
            content.image?.let {
                images += planImage(b, it, imageIndex)
                imageIndex++
                b.text("\n")
                mediaBefore = true
            }
            content.audio16k?.let {
                audioIndex++
                b.text("Audio $audioIndex: ")
                audio += planAudio(b, it, audioIndex - 1)
                b.text("\n")
                mediaBefore = true
            }
            val body = safe(content.text ?: "")
            // The runner would merge "\n" with a text that starts with whitespace and a newline; build_inputs does not.
            if (mediaBefore && body.isNotEmpty()) b.flush()
            b.text(body)
            b.text(turnEnd)
        }
        if (addGenerationPrompt) b.text("${roleStart}assistant$roleEnd")
        b.flush()
        return RunnerPlan(b.inputs, images, audio)
    }

    private fun planImage(b: Builder, image: RgbImage, index: Int): Map<String, Any?> {
        val cfg = frontEnd.image
        ImagePrep.checkSize(image.width, image.height, cfg)
        val sliced = ImagePrep.slice(image, cfg)
        val grid = sliced.layout.grid
        if (cfg.useImageId) b.text("${mk.imIdStart}$index${mk.imIdEnd}")
        b.text(mk.imStart)
        b.media(RunnerInput.Image(index, "source", null, null, sliced.source, cfg.imageFeatureSize))
        b.text(mk.imEnd)
        if (grid != null) {
            for (r in 0 until grid.rows) {
                if (r > 0) b.text("\n")
                for (c in 0 until grid.cols) {
                    b.text(mk.sliceStart)
                    b.media(RunnerInput.Image(index, "slice", r, c, sliced.slices[r * grid.cols + c], cfg.imageFeatureSize))
                    b.text(mk.sliceEnd)
                }
            }
        }
        return mapOf("width" to image.width, "height" to image.height,
            "source" to listOf(sliced.layout.source.width, sliced.layout.source.height),
            "grid" to grid?.let { listOf(it.cols, it.rows) },
            "slice" to sliced.layout.slice?.let { listOf(it.width, it.height) })
    }

    private fun planAudio(b: Builder, wave: FloatArray, index: Int): Map<String, Any?> {
        val clips = AudioPrep.splitClips(wave.size, frontEnd.audio)
        clips.forEachIndexed { k, clip ->
            b.text(mk.audioStart)
            b.media(RunnerInput.Audio(index, k, clip, wave.copyOfRange(clip.firstSample, clip.firstSample + clip.samples)))
            b.text(mk.audioEnd)
        }
        return mapOf("samples" to wave.size, "clips" to clips.map {
            mapOf("first_sample" to it.firstSample, "samples" to it.samples, "mel_frames" to it.melFrames, "tokens" to it.tokens)
        })
    }

    private fun validate(messages: List<ChatMessage>, continuing: Boolean) {
        if (messages.isEmpty()) throw ChatFormatError("messages must not be empty")
        messages.forEachIndexed { i, m ->
            if (m.role !in listOf("system", "user", "assistant")) throw ChatFormatError(
                "messages[$i] has role \"${m.role}\"; use system, user or assistant")
            if (m.role == "system" && (i > 0 || continuing)) throw ChatFormatError(
                "messages[$i] is a system message; only the first message may be one")
            val hasMedia = m.content.image != null || m.content.audio16k != null
            if (m.role != "user" && hasMedia) throw ChatFormatError(
                "messages[$i] is a ${m.role} message; images and audio go in user messages")
            if (m.role == "user" && m.content.text.isNullOrEmpty() && !hasMedia) throw ChatFormatError(
                "messages[$i] is empty: give it text, an image or audio")
        }
    }
}
