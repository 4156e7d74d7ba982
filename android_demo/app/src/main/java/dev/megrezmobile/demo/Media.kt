package dev.megrezmobile.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.media.AudioFormat
import android.media.AudioRecord
import android.media.MediaCodec
import android.media.MediaExtractor
import android.media.MediaFormat
import android.media.MediaRecorder
import android.net.Uri
import dev.megrezmobile.core.AudioConfig
import dev.megrezmobile.core.AudioPrep
import dev.megrezmobile.core.ExifOrientation
import dev.megrezmobile.core.ImageConfig
import dev.megrezmobile.core.ImagePrep
import dev.megrezmobile.core.RgbImage
import java.nio.ByteOrder
import java.util.concurrent.atomic.AtomicBoolean

/** Platform decoding only; everything after the decoded pixels / samples is the core's (shared with the SDK). */
object Media {
    /** A photo as upright RGB: BitmapFactory (which ignores EXIF) + the core's EXIF orientation, as the SDK does. */
    fun loadImage(context: Context, uri: Uri, cfg: ImageConfig): RgbImage {
        val bytes = context.contentResolver.openInputStream(uri)!!.use { it.readBytes() }
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        BitmapFactory.decodeByteArray(bytes, 0, bytes.size, bounds)
        ImagePrep.checkSize(bounds.outWidth, bounds.outHeight, cfg)  // before decoding a possible bomb
        val opts = BitmapFactory.Options().apply { inPreferredConfig = Bitmap.Config.ARGB_8888 }
        val bitmap = BitmapFactory.decodeByteArray(bytes, 0, bytes.size, opts)
            ?: throw IllegalArgumentException("this file is not an image Android can decode; pick a JPEG, PNG, WebP or HEIC")
        val argb = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(argb, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        val rgb = RgbImage.fromArgb(bitmap.width, bitmap.height, argb)
        bitmap.recycle()
        return ExifOrientation.apply(rgb, ExifOrientation.readJpeg(bytes))
    }

    /** An audio file (m4a, mp3, wav, ogg ...) through the platform decoders, then the core's downmix and resampling. */
    fun loadAudioFile(context: Context, uri: Uri, cfg: AudioConfig): FloatArray {
        val extractor = MediaExtractor()
        context.contentResolver.openFileDescriptor(uri, "r")!!.use { extractor.setDataSource(it.fileDescriptor) }
        val track = (0 until extractor.trackCount).firstOrNull {
            extractor.getTrackFormat(it).getString(MediaFormat.KEY_MIME)?.startsWith("audio/") == true
        } ?: throw IllegalArgumentException("this file has no audio track")
        extractor.selectTrack(track)
        val format = extractor.getTrackFormat(track)
        val codec = MediaCodec.createDecoderByType(format.getString(MediaFormat.KEY_MIME)!!)
        codec.configure(format, null, null, 0)
        codec.start()
        var rate = format.getInteger(MediaFormat.KEY_SAMPLE_RATE)
        var channels = format.getInteger(MediaFormat.KEY_CHANNEL_COUNT)
        val samples = ArrayList<Float>()
        val info = MediaCodec.BufferInfo()
        var inputDone = false
        while (true) {
            if (!inputDone) {
                val i = codec.dequeueInputBuffer(10_000)
                if (i >= 0) {
                    val n = extractor.readSampleData(codec.getInputBuffer(i)!!, 0)
                    if (n < 0) { codec.queueInputBuffer(i, 0, 0, 0, MediaCodec.BUFFER_FLAG_END_OF_STREAM); inputDone = true }
                    else { codec.queueInputBuffer(i, 0, n, extractor.sampleTime, 0); extractor.advance() }
                }
            }
            val o = codec.dequeueOutputBuffer(info, 10_000)
            if (o == MediaCodec.INFO_OUTPUT_FORMAT_CHANGED) {
                rate = codec.outputFormat.getInteger(MediaFormat.KEY_SAMPLE_RATE)
                channels = codec.outputFormat.getInteger(MediaFormat.KEY_CHANNEL_COUNT)
            } else if (o >= 0) {
                val pcm = codec.getOutputBuffer(o)!!.order(ByteOrder.nativeOrder()).asShortBuffer()
                while (pcm.hasRemaining()) samples += pcm.get() / 32768f  // PCM16, as the SDK scales int16
                codec.releaseOutputBuffer(o, false)
                if (info.flags and MediaCodec.BUFFER_FLAG_END_OF_STREAM != 0) break
                if (samples.size / channels > (cfg.maxAudioSeconds * rate).toInt()) break  // refused below
            }
        }
        codec.stop(); codec.release(); extractor.release()
        val mono = AudioPrep.downmix(samples.toFloatArray(), channels)
        return AudioPrep.toModelRate(mono, rate, cfg, "the audio file")
    }

    /** 16 kHz mono PCM16 from the microphone until `stop` is set (RECORD_AUDIO must be granted). */
    @Suppress("MissingPermission")
    fun record(stop: AtomicBoolean, cfg: AudioConfig): FloatArray {
        val rate = cfg.samplingRate
        val size = maxOf(AudioRecord.getMinBufferSize(rate, AudioFormat.CHANNEL_IN_MONO, AudioFormat.ENCODING_PCM_16BIT), rate)
        val recorder = AudioRecord(MediaRecorder.AudioSource.MIC, rate, AudioFormat.CHANNEL_IN_MONO,
            AudioFormat.ENCODING_PCM_16BIT, size)
        val out = ArrayList<Float>()
        val buffer = ShortArray(size / 2)
        recorder.startRecording()
        try {
            while (!stop.get() && out.size < cfg.maxAudioSeconds * rate) {
                val n = recorder.read(buffer, 0, buffer.size)
                for (k in 0 until maxOf(n, 0)) out += buffer[k] / 32768f
            }
        } finally { recorder.stop(); recorder.release() }
        return AudioPrep.toModelRate(out.toFloatArray(), rate, cfg, "the recording")
    }
}
