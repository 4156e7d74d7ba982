import Foundation

/// Image slicing parameters (megrez_mobile/config.py `ImageProcessingConfig`).
public struct ImageConfig: Equatable {
    public var scaleResolution: Int
    public var maxSliceNums: Int
    public var patchSize: Int
    public var sliceMode: Bool
    public var useImageId: Bool
    public var imageFeatureSize: Int
    public var maxPixels: Int64
    public var maxSliceSide: Int

    public init(scaleResolution: Int = 448, maxSliceNums: Int = 9, patchSize: Int = 14, sliceMode: Bool = true,
                useImageId: Bool = true, imageFeatureSize: Int = 64, maxPixels: Int64 = 64_000_000,
                maxSliceSide: Int = 1792) {
        self.scaleResolution = scaleResolution
        self.maxSliceNums = maxSliceNums
        self.patchSize = patchSize
        self.sliceMode = sliceMode
        self.useImageId = useImageId
        self.imageFeatureSize = imageFeatureSize
        self.maxPixels = maxPixels
        self.maxSliceSide = maxSliceSide
    }
}

/// Audio front-end parameters (megrez_mobile/config.py `AudioProcessingConfig`).
public struct AudioConfig: Equatable {
    public var samplingRate: Int
    public var featureSize: Int
    public var hopLength: Int
    public var chunkLength: Int
    public var maxAudioSeconds: Double
    public var minAudioSeconds: Double

    public init(samplingRate: Int = 16000, featureSize: Int = 128, hopLength: Int = 160, chunkLength: Int = 30,
                maxAudioSeconds: Double = 300.0, minAudioSeconds: Double = 0.04) {
        self.samplingRate = samplingRate
        self.featureSize = featureSize
        self.hopLength = hopLength
        self.chunkLength = chunkLength
        self.maxAudioSeconds = maxAudioSeconds
        self.minAudioSeconds = minAudioSeconds
    }

    public var samplesPerClip: Int { chunkLength * samplingRate }
}

/// Marker strings of the chat template (megrez_mobile/config.py `MarkerTokens`).
public struct Markers: Equatable {
    public var imStart: String
    public var imEnd: String
    public var imIdStart: String
    public var imIdEnd: String
    public var sliceStart: String
    public var sliceEnd: String
    public var audioStart: String
    public var audioEnd: String

    public init(imStart: String = "<|image_start|>", imEnd: String = "<|image_end|>",
                imIdStart: String = "<|image_id_start|>", imIdEnd: String = "<|image_id_end|>",
                sliceStart: String = "<|slice_start|>", sliceEnd: String = "<|slice_end|>",
                audioStart: String = "<|audio_start|>", audioEnd: String = "<|audio_end|>") {
        self.imStart = imStart
        self.imEnd = imEnd
        self.imIdStart = imIdStart
        self.imIdEnd = imIdEnd
        self.sliceStart = sliceStart
        self.sliceEnd = sliceEnd
        self.audioStart = audioStart
        self.audioEnd = audioEnd
    }

    public static let ROLE_START = "<|role_start|>"
    public static let ROLE_END = "<|role_end|>"
    public static let TURN_END = "<|turn_end|>"
}

/// The manifest's "front_end": what the chat template, slicing and audio split need.
public struct FrontEndConfig: Equatable {
    public var image: ImageConfig
    public var audio: AudioConfig
    public var markers: Markers
    public var defaultSystemPrompt: String?

    public init(image: ImageConfig = ImageConfig(), audio: AudioConfig = AudioConfig(), markers: Markers = Markers(),
                defaultSystemPrompt: String? = nil) {
        self.image = image
        self.audio = audio
        self.markers = markers
        self.defaultSystemPrompt = defaultSystemPrompt
    }

    public static func fromJson(_ fe: JsonObject) throws -> FrontEndConfig {
        let p = try fe.obj("preprocessor_config")
        let d = ImageConfig()
        let a = AudioConfig()
        let m = Markers()
        let image = ImageConfig(
            scaleResolution: try p.intOr("scale_resolution", d.scaleResolution),
            maxSliceNums: try p.intOr("max_slice_nums", d.maxSliceNums),
            patchSize: try p.intOr("patch_size", d.patchSize), sliceMode: try p.boolOr("slice_mode", d.sliceMode),
            useImageId: try p.boolOr("use_image_id", d.useImageId),
            imageFeatureSize: try p.intOr("image_feature_size", d.imageFeatureSize),
            maxPixels: try p.has("max_pixels") ? p.long("max_pixels") : d.maxPixels,
            maxSliceSide: try p.intOr("max_slice_side", d.maxSliceSide))
        if image.patchSize < 1 || image.scaleResolution % image.patchSize != 0 ||
            image.maxSliceSide % image.patchSize != 0 || image.maxSliceNums < 1 {
            throw FieldError("front_end.preprocessor_config", "has inconsistent image parameters (scale_resolution " +
                             "and max_slice_side must be multiples of patch_size)")
        }
        let audio = AudioConfig(
            samplingRate: try p.intOr("sampling_rate", a.samplingRate),
            featureSize: try p.intOr("feature_size", a.featureSize),
            hopLength: try p.intOr("hop_length", a.hopLength), chunkLength: try p.intOr("chunk_length", a.chunkLength),
            maxAudioSeconds: try p.doubleOr("max_audio_seconds", a.maxAudioSeconds),
            minAudioSeconds: try p.doubleOr("min_audio_seconds", a.minAudioSeconds))
        let markers = Markers(
            imStart: try p.stringOrNull("im_start") ?? m.imStart, imEnd: try p.stringOrNull("im_end") ?? m.imEnd,
            imIdStart: try p.stringOrNull("im_id_start") ?? m.imIdStart,
            imIdEnd: try p.stringOrNull("im_id_end") ?? m.imIdEnd,
            sliceStart: try p.stringOrNull("slice_start") ?? m.sliceStart,
            sliceEnd: try p.stringOrNull("slice_end") ?? m.sliceEnd,
            audioStart: try p.stringOrNull("audio_start") ?? m.audioStart,
            audioEnd: try p.stringOrNull("audio_end") ?? m.audioEnd)
        return FrontEndConfig(image: image, audio: audio, markers: markers,
                              defaultSystemPrompt: try fe.stringOrNull("default_system_prompt"))
    }
}
