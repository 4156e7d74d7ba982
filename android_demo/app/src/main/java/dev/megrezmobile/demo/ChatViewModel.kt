package dev.megrezmobile.demo

import android.app.Application
import android.net.Uri
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateListOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.setValue
import androidx.lifecycle.AndroidViewModel
import dev.megrezmobile.core.ChatMessage
import dev.megrezmobile.core.Content
import dev.megrezmobile.core.Continuation
import dev.megrezmobile.core.Neutralize
import dev.megrezmobile.core.RgbImage
import dev.megrezmobile.core.RunnerPlanner
import java.io.File
import java.util.concurrent.Executors
import java.util.concurrent.atomic.AtomicBoolean

class ChatLine(val role: String, text: String, val attachments: String = "") {
    var text by mutableStateOf(text)
    var stats by mutableStateOf("")
}

/**
 * The chat: one conversation on one runner. The first turn is planned whole (default system prompt included);
 * later turns continue the runner's KV cache (core `Continuation`). All runtime calls go to one worker thread.
 */
class ChatViewModel(app: Application) : AndroidViewModel(app) {
    private val worker = Executors.newSingleThreadExecutor()
    private var engine: MegrezEngine? = null
    private var planner: RunnerPlanner? = null
    private var bundle: VerifiedBundle? = null
    private var imagesSoFar = 0
    private var audioSoFar = 0
    private var pendingAnswer: String? = null  // null: no turn yet
    private val recordingStop = AtomicBoolean(false)

    val lines = mutableStateListOf<ChatLine>()
    var status by mutableStateOf("No bundle loaded. Push one with adb or import a folder.")
    var busy by mutableStateOf(false)
    var recording by mutableStateOf(false)
    var pendingImage by mutableStateOf<RgbImage?>(null)
    var pendingAudio by mutableStateOf<FloatArray?>(null)

    fun bundles(): List<File> = BundleStore.candidates(getApplication())

    private fun background(what: String, job: () -> Unit) {
        busy = true
        worker.execute {
            try { job() } catch (e: Exception) { status = "$what failed: ${e.message}" } finally { busy = false }
        }
    }

    fun open(dir: File) = background("Loading") { load(BundleStore.verify(dir) { status = it }) }

    fun import(tree: Uri) = background("Importing") { load(BundleStore.import(getApplication(), tree) { status = it }) }

    private fun load(verified: VerifiedBundle) {
        engine?.close()
        status = "loading ${verified.dir.name} …"
        val e = MegrezEngine(verified).also { it.load() }
        val tokenizerJson = File(verified.dir, verified.manifest.tokenizer.file).readText()
        planner = RunnerPlanner(verified.manifest.frontEnd, Neutralize.addedTokens(tokenizerJson))
        engine = e
        bundle = verified
        newChat()
        status = (listOf("${verified.dir.name}: ${verified.manifest.recipeName}, context ${verified.manifest.maxContext}") +
            verified.warnings).joinToString("\n")
    }

    fun newChat() {
        engine?.reset()
        imagesSoFar = 0; audioSoFar = 0; pendingAnswer = null
        lines.clear()
    }

    fun attachImage(uri: Uri) = background("Reading the image") {
        pendingImage = Media.loadImage(getApplication(), uri, bundle?.manifest?.frontEnd?.image ?: return@background)
    }

    fun attachAudioFile(uri: Uri) = background("Reading the audio") {
        pendingAudio = Media.loadAudioFile(getApplication(), uri, bundle?.manifest?.frontEnd?.audio ?: return@background)
    }

    fun toggleRecording() {
        if (recording) { recordingStop.set(true); return }
        val cfg = bundle?.manifest?.frontEnd?.audio ?: return
        recordingStop.set(false)
        recording = true
        Thread {
            try { pendingAudio = Media.record(recordingStop, cfg) } catch (e: Exception) { status = "Recording failed: ${e.message}" }
            finally { recording = false }
        }.start()
    }

    fun send(text: String, maxNewTokens: Int = 512) {
        val e = engine ?: run { status = "Load a bundle first."; return }
        val p = planner ?: return
        val content = Content(text.ifBlank { null }, pendingImage, pendingAudio)
        if (content.text == null && content.image == null && content.audio16k == null) return
        val attachments = listOfNotNull(content.image?.let { "photo ${it.width}×${it.height}" },
            content.audio16k?.let { "audio %.1f s".format(it.size / 16000.0) }).joinToString(", ")
        lines += ChatLine("user", text, attachments)
        val reply = ChatLine("assistant", "")
        lines += reply
        pendingImage = null; pendingAudio = null
        background("Answering") {
            val message = ChatMessage("user", content)
            val plan = pendingAnswer?.let { p.plan(listOf(message), Continuation(imagesSoFar, audioSoFar, it)) }
                ?: p.plan(listOf(message))
            var last = ""
            val stats = e.answer(plan, maxNewTokens) { piece ->
                if (piece.isEmpty()) return@answer
                last = piece
                if (piece !in STOP_TEXTS) reply.text += piece
            }
            imagesSoFar += plan.imageCount
            audioSoFar += plan.audioCount
            // An answer that ended at a stop id left nothing unfed; one cut by the limit or by Stop left its last piece.
            pendingAnswer = if (last in STOP_TEXTS) "" else last
            reply.stats = stats.summary()
            val left = bundle!!.manifest.maxContext - e.positions
            if (left < 512) status = "Context almost full ($left positions left): start a new chat soon."
        }
    }

    fun stop() = engine?.stop()

    override fun onCleared() {
        worker.execute { engine?.close() }
        worker.shutdown()
    }

    companion object {
        /** The runner passes the stop token's text to the callback (executorch_notes §1.7); it is not answer text. */
        val STOP_TEXTS = setOf("<|turn_end|>", "<|eos|>")
    }
}
