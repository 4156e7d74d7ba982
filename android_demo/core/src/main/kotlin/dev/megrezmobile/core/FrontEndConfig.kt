package dev.megrezmobile.core

/** Image slicing parameters (megrez_mobile/config.py `ImageProcessingConfig`). */
data class ImageConfig(
    val scaleResolution: Int = 448,
    val maxSliceNums: Int = 9,
    val patchSize: Int = 14,
    val sliceMode: Boolean = true,
    val useImageId: Boolean = true,
    val imageFeatureSize: Int = 64,
    val maxPixels: Long = 64_000_000,
    val maxSliceSide: Int = 1792,
)

/** Audio front-end parameters (megrez_mobile/config.py `AudioProcessingConfig`). */
data class AudioConfig(
    val samplingRate: Int = 16000,
    val featureSize: Int = 128,
    val hopLength: Int = 160,
    val chunkLength: Int = 30,
    val maxAudioSeconds: Double = 300.0,
    val minAudioSeconds: Double = 0.04,
) {
    val samplesPerClip: Int get() = chunkLength * samplingRate
}

/** Marker strings of the chat template (megrez_mobile/config.py `MarkerTokens`). */
data class Markers(
    val imStart: String = "<|image_start|>",
    val imEnd: String = "<|image_end|>",
    val imIdStart: String = "<|image_id_start|>",
    val imIdEnd: String = "<|image_id_end|>",
    val sliceStart: String = "<|slice_start|>",
    val sliceEnd: String = "<|slice_end|>",
    val audioStart: String = "<|audio_start|>",
    val audioEnd: String = "<|audio_end|>",
) {
    companion object {
        const val ROLE_START = "<|role_start|>"
        const val ROLE_END = "<|role_end|>"
        const val TURN_END = "<|turn_end|>"
    }
}

/** The manifest's "front_end": what the chat template, slicing and audio split need. */
data class FrontEndConfig(
    val image: ImageConfig = ImageConfig(),
    val audio: AudioConfig = AudioConfig(),
    val markers: Markers = Markers(),
    val defaultSystemPrompt: String? = null,
) {
    companion object {
        fun fromJson(fe: JsonObject): FrontEndConfig {
            val p = fe.obj("preprocessor_config")
            val d = ImageConfig()
            val a = AudioConfig()
            val m = Markers()
            val image = ImageConfig(
                p.intOr("scale_resolution", d.scaleResolution), p.intOr("max_slice_nums", d.maxSliceNums),
                p.intOr("patch_size", d.patchSize), p.boolOr("slice_mode", d.sliceMode),
                p.boolOr("use_image_id", d.useImageId), p.intOr("image_feature_size", d.imageFeatureSize),
                if (p.has("max_pixels")) p.long("max_pixels") else d.maxPixels, p.intOr("max_slice_side", d.maxSliceSide))
            if (image.scaleResolution % image.patchSize != 0 || image.maxSliceSide % image.patchSize != 0 ||
                image.maxSliceNums < 1) throw FieldError("front_end.preprocessor_config", "has inconsistent image " +
                "parameters (scale_resolution and max_slice_side must be multiples of patch_size)")
            val audio = AudioConfig(
                p.intOr("sampling_rate", a.samplingRate), p.intOr("feature_size", a.featureSize),
                p.intOr("hop_length", a.hopLength), p.intOr("chunk_length", a.chunkLength),
                p.doubleOr("max_audio_seconds", a.maxAudioSeconds), p.doubleOr("min_audio_seconds", a.minAudioSeconds))
            val markers = Markers(
                p.stringOrNull("im_start") ?: m.imStart, p.stringOrNull("im_end") ?: m.imEnd,
                p.stringOrNull("im_id_start") ?: m.imIdStart, p.stringOrNull("im_id_end") ?: m.imIdEnd,
                p.stringOrNull("slice_start") ?: m.sliceStart, p.stringOrNull("slice_end") ?: m.sliceEnd,
                p.stringOrNull("audio_start") ?: m.audioStart, p.stringOrNull("audio_end") ?: m.audioEnd)
            return FrontEndConfig(image, audio, markers, fe.stringOrNull("default_system_prompt"))
        }
    }
}
