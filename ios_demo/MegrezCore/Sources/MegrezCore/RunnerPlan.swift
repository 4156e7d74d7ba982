import Foundation

/// What a message carries; the image is decoded and upright (EXIF applied), the audio mono at the model rate.
public final class Content {
    public let text: String?
    public let image: RgbImage?
    public let audio16k: [Float]?

    public init(text: String? = nil, image: RgbImage? = nil, audio16k: [Float]? = nil) {
        self.text = text
        self.image = image
        self.audio16k = audio16k
    }
}

public final class ChatMessage {
    public let role: String
    public let content: Content

    public init(_ role: String, _ content: Content) {
        self.role = role
        self.content = content
    }
}

/// A turn appended to a conversation whose KV cache the runner kept (see plan.py `Continuation`).
public struct Continuation: Equatable {
    public var imagesBefore: Int
    public var audioBefore: Int
    public var pendingAnswer: String

    public init(imagesBefore: Int = 0, audioBefore: Int = 0, pendingAnswer: String = "") {
        self.imagesBefore = imagesBefore
        self.audioBefore = audioBefore
        self.pendingAnswer = pendingAnswer
    }
}

/// One input of the multimodal runner, in order: text, an image (uint8 CHW), or an audio clip (16 kHz samples that
/// the bundle's audio_preprocessor turns into the mel the runner's audio input takes).
public enum RunnerInput {
    case text(Text)
    case image(Image)
    case audio(Audio)

    public func toJson() -> JsonMap {
        switch self {
        case .text(let t): return t.toJson()
        case .image(let i): return i.toJson()
        case .audio(let a): return a.toJson()
        }
    }

    /// Positions this input fills in the context (text: not known without the tokenizer, see `Text.maxTokens`).
    public var maxTokens: Int {
        switch self {
        case .text(let t): return t.maxTokens
        case .image(let i): return i.maxTokens
        case .audio(let a): return a.maxTokens
        }
    }

    public struct Text {
        public let text: String

        public init(_ text: String) { self.text = text }

        public func toJson() -> JsonMap { JsonMap([("kind", "text"), ("text", text)]) }
        /// Byte-level BPE never makes more tokens than UTF-8 bytes: a safe upper bound for overflow warnings.
        public var maxTokens: Int { text.utf8.count }
    }

    public final class Image {
        public let image: Int
        public let part: String
        public let row: Int?
        public let col: Int?
        public let pixels: RgbImage
        public let tokens: Int

        public init(_ image: Int, _ part: String, _ row: Int?, _ col: Int?, _ pixels: RgbImage, _ tokens: Int) {
            self.image = image
            self.part = part
            self.row = row
            self.col = col
            self.pixels = pixels
            self.tokens = tokens
        }

        public var width: Int { pixels.width }
        public var height: Int { pixels.height }
        public var maxTokens: Int { tokens }

        public func toJson() -> JsonMap {
            var m = JsonMap([("kind", "image"), ("image", image), ("part", part), ("width", width), ("height", height),
                             ("tokens", tokens)])
            if let row = row { m["row"] = row; m["col"] = col }
            return m
        }
    }

    public final class Audio {
        public let audio: Int
        public let clip: Int
        public let info: AudioClip
        public let waveform: [Float]

        public init(_ audio: Int, _ clip: Int, _ info: AudioClip, _ waveform: [Float]) {
            self.audio = audio
            self.clip = clip
            self.info = info
            self.waveform = waveform
        }

        public var maxTokens: Int { info.tokens }

        public func toJson() -> JsonMap {
            JsonMap([("kind", "audio"), ("audio", audio), ("clip", clip), ("first_sample", info.firstSample),
                     ("samples", info.samples), ("mel_frames", info.melFrames), ("tokens", info.tokens)])
        }
    }
}

public final class RunnerPlan {
    public let inputs: [RunnerInput]
    public let images: [JsonMap]
    public let audio: [JsonMap]

    public init(_ inputs: [RunnerInput], _ images: [JsonMap], _ audio: [JsonMap]) {
        self.inputs = inputs
        self.images = images
        self.audio = audio
    }

    public func toJson() -> JsonMap {
        JsonMap([("schema", RunnerPlan.SCHEMA), ("inputs", inputs.map { $0.toJson() }), ("images", images),
                 ("audio", audio)])
    }

    /// An upper bound of the positions this plan adds (exact for media, UTF-8 bytes for text).
    public var maxTokens: Int { inputs.reduce(0) { $0 + $1.maxTokens } }
    public var imageCount: Int { images.count }
    public var audioCount: Int { audio.count }

    public static let SCHEMA = "megrez-mobile/runner-plan/1"
}

/// A message the template cannot take, named by its index (plan.py / processor.py `_validate`).
public struct ChatFormatError: Error, LocalizedError, CustomStringConvertible {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
    public var errorDescription: String? { message }
}

/// The chat template rendered as runner inputs: megrez_mobile/processing/plan.py `runner_plan`, step for step.
/// `addedTokens`: tokenizer.json's added-token strings, for `Neutralize`.
public final class RunnerPlanner {
    private let frontEnd: FrontEndConfig
    private let addedTokens: [String]
    private var mk: Markers { frontEnd.markers }

    public init(_ frontEnd: FrontEndConfig, _ addedTokens: [String]) {
        self.frontEnd = frontEnd
        self.addedTokens = addedTokens
    }

    private final class Builder {
        var inputs: [RunnerInput] = []
        private var pendingText = ""
        func text(_ s: String) { pendingText += s }
        func flush() {
            if !pendingText.isEmpty { inputs.append(.text(RunnerInput.Text(pendingText))) }
            pendingText = ""
        }
        func media(_ input: RunnerInput) { flush(); inputs.append(input) }
    }

    public func plan(_ messages: [ChatMessage], _ continuation: Continuation? = nil,
                     addGenerationPrompt: Bool = true) throws -> RunnerPlan {
        try validate(messages, continuation != nil)
        let b = Builder()
        var images: [JsonMap] = []
        var audio: [JsonMap] = []
        let added = addedTokens
        let safe = { (s: String) -> String in Neutralize.apply(s, added) }
        var imageIndex = continuation?.imagesBefore ?? 0
        var audioIndex = continuation?.audioBefore ?? 0
        let (roleStart, roleEnd, turnEnd) = (Markers.ROLE_START, Markers.ROLE_END, Markers.TURN_END)
        if let continuation = continuation {
            b.text(safe(continuation.pendingAnswer) + turnEnd)
        } else if messages[0].role != "system", let system = frontEnd.defaultSystemPrompt, !system.isEmpty {
            b.text("\(roleStart)system\(roleEnd)\(safe(system))\(turnEnd)")
        }
        for msg in messages {
            let content = msg.content
            b.text("\(roleStart)\(msg.role)\(roleEnd)")
            var mediaBefore = false
            if let image = content.image {
                images.append(try planImage(b, image, imageIndex))
                imageIndex += 1
                b.text("\n")
                mediaBefore = true
            }
            if let wave = content.audio16k {
                audioIndex += 1
                b.text("Audio \(audioIndex): ")
                audio.append(try planAudio(b, wave, audioIndex - 1))
                b.text("\n")
                mediaBefore = true
            }
            let body = safe(content.text ?? "")
            // The runner would merge "\n" with a text that starts with whitespace and a newline; build_inputs does not.
            if mediaBefore && !body.isEmpty { b.flush() }
            b.text(body)
            b.text(turnEnd)
        }
        if addGenerationPrompt { b.text("\(roleStart)assistant\(roleEnd)") }
        b.flush()
        return RunnerPlan(b.inputs, images, audio)
    }

    private func planImage(_ b: Builder, _ image: RgbImage, _ index: Int) throws -> JsonMap {
        let cfg = frontEnd.image
        try ImagePrep.checkSize(image.width, image.height, cfg)
        let sliced = try ImagePrep.slice(image, cfg)
        let grid = sliced.layout.grid
        if cfg.useImageId { b.text("\(mk.imIdStart)\(index)\(mk.imIdEnd)") }
        b.text(mk.imStart)
        b.media(.image(RunnerInput.Image(index, "source", nil, nil, sliced.source, cfg.imageFeatureSize)))
        b.text(mk.imEnd)
        if let grid = grid {
            for r in 0..<grid.rows {
                if r > 0 { b.text("\n") }
                for c in 0..<grid.cols {
                    b.text(mk.sliceStart)
                    b.media(.image(RunnerInput.Image(index, "slice", r, c, sliced.slices[r * grid.cols + c],
                                                     cfg.imageFeatureSize)))
                    b.text(mk.sliceEnd)
                }
            }
        }
        let gridJson: Any? = grid.map { [$0.cols, $0.rows] }
        let sliceJson: Any? = sliced.layout.slice.map { [$0.width, $0.height] }
        return JsonMap([("width", image.width), ("height", image.height),
                        ("source", [sliced.layout.source.width, sliced.layout.source.height]),
                        ("grid", gridJson), ("slice", sliceJson)])
    }

    private func planAudio(_ b: Builder, _ wave: [Float], _ index: Int) throws -> JsonMap {
        let clips = try AudioPrep.splitClips(wave.count, frontEnd.audio)
        for (k, clip) in clips.enumerated() {
            b.text(mk.audioStart)
            b.media(.audio(RunnerInput.Audio(index, k, clip,
                                             Array(wave[clip.firstSample..<clip.firstSample + clip.samples]))))
            b.text(mk.audioEnd)
        }
        let clipsJson: [Any?] = clips.map {
            JsonMap([("first_sample", $0.firstSample), ("samples", $0.samples), ("mel_frames", $0.melFrames),
                     ("tokens", $0.tokens)])
        }
        return JsonMap([("samples", wave.count), ("clips", clipsJson)])
    }

    private func validate(_ messages: [ChatMessage], _ continuing: Bool) throws {
        if messages.isEmpty { throw ChatFormatError("messages must not be empty") }
        for (i, m) in messages.enumerated() {
            if !["system", "user", "assistant"].contains(m.role) {
                throw ChatFormatError("messages[\(i)] has role \"\(m.role)\"; use system, user or assistant")
            }
            if m.role == "system" && (i > 0 || continuing) {
                throw ChatFormatError("messages[\(i)] is a system message; only the first message may be one")
            }
            let hasMedia = m.content.image != nil || m.content.audio16k != nil
            if m.role != "user" && hasMedia {
                throw ChatFormatError("messages[\(i)] is a \(m.role) message; images and audio go in user messages")
            }
            if m.role == "user" && (m.content.text ?? "").isEmpty && !hasMedia {
                throw ChatFormatError("messages[\(i)] is empty: give it text, an image or audio")
            }
        }
    }
}
