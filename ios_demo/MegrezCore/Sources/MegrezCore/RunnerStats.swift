import Foundation

/// One answer's numbers: the runner's stats JSON (ExecuTorch's stats_to_json_string, epoch milliseconds, handed
/// over by the app's runner wrapper) plus what the runner does not time: image and audio encoding (the app times
/// its prefill calls).
public struct AnswerStats: Equatable {
    public var promptTokens: Int64
    public var generatedTokens: Int64
    public var timeToFirstTokenMs: Int64
    public var prefillTokPerS: Double
    public var decodeTokPerS: Double
    public var imageEncodeMs: Int64
    public var audioEncodeMs: Int64
    public var peakMemoryMb: Double

    public init(_ promptTokens: Int64, _ generatedTokens: Int64, _ timeToFirstTokenMs: Int64, _ prefillTokPerS: Double,
                _ decodeTokPerS: Double, imageEncodeMs: Int64 = 0, audioEncodeMs: Int64 = 0, peakMemoryMb: Double = 0) {
        self.promptTokens = promptTokens
        self.generatedTokens = generatedTokens
        self.timeToFirstTokenMs = timeToFirstTokenMs
        self.prefillTokPerS = prefillTokPerS
        self.decodeTokPerS = decodeTokPerS
        self.imageEncodeMs = imageEncodeMs
        self.audioEncodeMs = audioEncodeMs
        self.peakMemoryMb = peakMemoryMb
    }

    /// One line for the chat UI.
    public func summary() -> String {
        var s = String(format: "TTFT %.2f s · prefill %.1f tok/s · decode %.1f tok/s",
                       Double(timeToFirstTokenMs) / 1000.0, prefillTokPerS, decodeTokPerS)
        if imageEncodeMs > 0 { s += String(format: " · image %.2f s", Double(imageEncodeMs) / 1000.0) }
        if audioEncodeMs > 0 { s += String(format: " · audio %.2f s", Double(audioEncodeMs) / 1000.0) }
        if peakMemoryMb > 0 { s += String(format: " · peak %.0f MB", peakMemoryMb) }
        return s
    }

    public func toJson() -> JsonMap {
        JsonMap([("prompt_tokens", promptTokens), ("generated_tokens", generatedTokens),
                 ("ttft_ms", timeToFirstTokenMs), ("prefill_tok_s", prefillTokPerS), ("decode_tok_s", decodeTokPerS),
                 ("image_encode_ms", imageEncodeMs), ("audio_encode_ms", audioEncodeMs),
                 ("peak_memory_mb", peakMemoryMb)])
    }

    /// From the runner's stats JSON. In the multimodal runner, the first token is sampled at the end of prefill and
    /// not counted in num_generated_tokens; decode speed is over the tokens after it.
    public static func fromRunnerJson(_ json: String, imageEncodeMs: Int64 = 0, audioEncodeMs: Int64 = 0,
                                      peakMemoryMb: Double = 0) throws -> AnswerStats {
        let o = try JsonObject.parse(json, "runner stats")
        let start = try o.long("inference_start_ms")
        let promptEnd = try o.long("prompt_eval_end_ms")
        let first = try o.long("first_token_ms")
        let end = try o.long("inference_end_ms")
        let prompt = try o.long("num_prompt_tokens")
        let generated = try o.long("num_generated_tokens")
        let prefillS = Double(max(promptEnd - start, 1)) / 1000.0
        let decodeS = Double(max(end - first, 1)) / 1000.0
        return AnswerStats(prompt, generated, first - start, Double(prompt) / prefillS, Double(generated) / decodeS,
                           imageEncodeMs: imageEncodeMs, audioEncodeMs: audioEncodeMs, peakMemoryMb: peakMemoryMb)
    }
}
