package dev.megrezmobile.cli

import dev.megrezmobile.core.AudioPrep
import dev.megrezmobile.core.ChatMessage
import dev.megrezmobile.core.Content
import dev.megrezmobile.core.Continuation
import dev.megrezmobile.core.ExifOrientation
import dev.megrezmobile.core.FrontEndConfig
import dev.megrezmobile.core.Json
import dev.megrezmobile.core.JsonObject
import dev.megrezmobile.core.RgbImage
import dev.megrezmobile.core.RunnerInput
import dev.megrezmobile.core.RunnerPlan
import dev.megrezmobile.core.RunnerPlanner
import dev.megrezmobile.core.WavAudio
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import javax.imageio.ImageIO
import kotlin.system.exitProcess

/**
 * The core's plan for a request, printed as the Python SDK prints it (megrez_mobile/processing/plan.py):
 *
 *     java -cp core.jar:kotlin-stdlib.jar dev.megrezmobile.cli.PlanCliKt REQUEST.json [--media-out DIR]
 *
 * `--media-out` also writes each runner input's payload: inputNN.chw (uint8 [3, H, W]) for images, inputNN.f32
 * (float32 little-endian 16 kHz samples) for audio clips. JVM only: images are decoded with javax.imageio (the
 * app uses Android's decoders), WAV with the core's reader.
 */
fun main(args: Array<String>) {
    if (args.isEmpty() || args[0].startsWith("-")) {
        System.err.println("usage: PlanCli REQUEST.json [--media-out DIR]")
        exitProcess(2)
    }
    val requestFile = File(args[0])
    val mediaOut = args.indexOf("--media-out").takeIf { it >= 0 }?.let { File(args[it + 1]) }
    val plan = planRequest(requestFile)
    print(Json.canonical(plan.toJson()))
    if (mediaOut != null) writeMedia(plan, mediaOut)
}

fun planRequest(requestFile: File): RunnerPlan {
    val request = JsonObject.parse(requestFile.readText(), requestFile.path)
    val base = requestFile.absoluteFile.parentFile
    val frontEnd = FrontEndConfig.fromJson(request.obj("front_end"))
    val added = request.list("added_tokens").map { it as String }
    val messages = request.list("messages").map { raw ->
        @Suppress("UNCHECKED_CAST") val m = JsonObject(raw as Map<String, Any?>, "messages")
        val content = when (val c = m.raw["content"]) {
            is String -> Content(text = c)
            else -> {
                @Suppress("UNCHECKED_CAST") val o = JsonObject(c as Map<String, Any?>, "content")
                Content(o.stringOrNull("text"), o.stringOrNull("image")?.let { decodeImage(resolve(base, it)) },
                    o.stringOrNull("audio")?.let { decodeWav(resolve(base, it), frontEnd) })
            }
        }
        ChatMessage(m.string("role"), content)
    }
    val continuation = if (request.has("continuation")) request.obj("continuation").let {
        Continuation(it.int("images_before"), it.int("audio_before"), it.string("pending_answer"))
    } else null
    return RunnerPlanner(frontEnd, added).plan(messages, continuation)
}

/** Media paths are relative to the request's folder unless absolute (as Python's `base / path`). */
private fun resolve(base: File, path: String): File = File(path).let { if (it.isAbsolute) it else File(base, path) }

private fun decodeImage(file: File): RgbImage {
    val bytes = file.readBytes()
    val im = ImageIO.read(file) ?: error("$file: javax.imageio cannot decode it")
    val argb = im.getRGB(0, 0, im.width, im.height, null, 0, im.width)
    return ExifOrientation.apply(RgbImage.fromArgb(im.width, im.height, argb), ExifOrientation.readJpeg(bytes))
}

private fun decodeWav(file: File, frontEnd: FrontEndConfig): FloatArray {
    val wav = WavAudio.parse(file.readBytes())
    return AudioPrep.toModelRate(wav.mono, wav.sampleRate, frontEnd.audio, file.name)
}

private fun writeMedia(plan: RunnerPlan, dir: File) {
    dir.mkdirs()
    plan.inputs.forEachIndexed { k, input ->
        val name = "input%02d".format(k)
        when (input) {
            is RunnerInput.Image -> File(dir, "$name.chw").writeBytes(input.pixels.toChw())
            is RunnerInput.Audio -> {
                val buf = ByteBuffer.allocate(input.waveform.size * 4).order(ByteOrder.LITTLE_ENDIAN)
                input.waveform.forEach { buf.putFloat(it) }
                File(dir, "$name.f32").writeBytes(buf.array())
            }
            is RunnerInput.Text -> Unit
        }
    }
}
