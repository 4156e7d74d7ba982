import Foundation

/// Audio that cannot be used, with the reason in words (megrez_mobile/processing/audio.py `_finish`).
public struct AudioInputError: Error, LocalizedError, CustomStringConvertible {
    public let kind: String
    public let message: String

    public init(_ kind: String, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
    public var errorDescription: String? { message }
}

/// One <= 30 s piece of the 16 kHz waveform: its own encoder call and placeholder span.
public struct AudioClip: Equatable {
    public let firstSample: Int
    public let samples: Int
    public let melFrames: Int
    public let tokens: Int
}

/// The audio front end up to the waveform `audio_preprocessor` takes: downmix, resample to 16 kHz, length limits,
/// and the 30 s clip split (megrez_mobile/processing/audio.py `load_audio` / `split_clips`).
///
/// Resampling: Python uses soxr ("HQ"); here a linear-phase windowed-sinc (Kaiser, beta 8.6, 32 zero crossings,
/// cut-off 0.95 of the lower Nyquist), the Kotlin core's. Output length is exactly Python's, ceil(n * 16000 / rate),
/// so the plan's clip, mel-frame and token counts are identical; the samples differ from soxr's by a small residual
/// (the tests require > 60 dB SNR against soxr_hq). 16 kHz input is passed through untouched.
public enum AudioPrep {
    /// Mean of the channels, as Python's downmix: `interleaved` is frames x channels.
    public static func downmix(_ interleaved: [Float], _ channels: Int) -> [Float] {
        if channels == 1 { return interleaved }
        let n = interleaved.count / channels
        var out = [Float](repeating: 0, count: n)
        for i in 0..<n {
            var s: Float = 0
            for c in 0..<channels { s += interleaved[i * channels + c] }
            out[i] = s / Float(channels)
        }
        return out
    }

    /// Python: int(np.ceil(n * (float(target) / rate))).
    public static func resampledLength(_ n: Int, _ rate: Int, _ target: Int = 16000) -> Int {
        Int((Double(n) * (Double(target) / Double(rate))).rounded(.up))
    }

    public static func minSamples(_ cfg: AudioConfig) -> Int {
        Int((cfg.minAudioSeconds * Double(cfg.samplingRate) - 1e-6).rounded(.up))
    }

    /// Mono samples at `rate` -> the 16 kHz waveform, with Python's checks (empty, non-finite, too long, too short).
    public static func toModelRate(_ mono: [Float], _ rate: Int, _ cfg: AudioConfig = AudioConfig(),
                                   _ name: String = "audio") throws -> [Float] {
        if mono.contains(where: { !$0.isFinite }) {
            throw AudioInputError("not_finite", "\(name) contains NaN or infinite samples")
        }
        _ = try checkedModelLength(mono.count, rate, cfg, name)
        return rate == cfg.samplingRate ? mono : resample(mono, rate, cfg.samplingRate)
    }

    /// Samples at the model rate for `n` input samples at `rate`, or the AudioInputError load_audio would raise.
    public static func checkedModelLength(_ n: Int, _ rate: Int, _ cfg: AudioConfig = AudioConfig(),
                                          _ name: String = "audio") throws -> Int {
        if n == 0 { throw AudioInputError("empty", "\(name) contains no samples; pass a non-empty recording") }
        if rate <= 0 { throw AudioInputError("bad_rate", "\(name) has a sample rate of \(rate) Hz") }
        if Double(n) / Double(rate) > cfg.maxAudioSeconds {
            throw AudioInputError("too_long", "\(name) is \(String(format: "%.1f", Double(n) / Double(rate))) s, " +
                                  "longer than the \(String(format: "%.0f", cfg.maxAudioSeconds)) s limit; trim it " +
                                  "or split the recording")
        }
        let length = rate == cfg.samplingRate ? n : resampledLength(n, rate, cfg.samplingRate)
        if length < minSamples(cfg) {
            throw AudioInputError("too_short", "\(name) is shorter than the \(cfg.minAudioSeconds) s minimum (it " +
                                  "would give no audio token); record longer")
        }
        return length
    }

    /// Whisper's encoder reads the valid mel frames rounded up to even (megrez_mobile/config.py).
    public static func encoderMelFrames(_ samples: Int, _ hop: Int = 160) -> Int { (samples / hop + 1) / 2 * 2 }

    /// LLM positions of one clip, learned BOS/EOS included.
    public static func audioTokensForFrames(_ melFrames: Int) -> Int {
        let afterCnn = (melFrames - 1) / 2 + 1
        return (afterCnn - 2) / 2 + 1 + 2
    }

    /// Consecutive clips of exactly chunk_length s plus the remainder; a too-short remainder after a full clip is
    /// dropped.
    public static func splitClips(_ totalSamples: Int, _ cfg: AudioConfig = AudioConfig()) throws -> [AudioClip] {
        guard totalSamples > 0 else { throw AudioInputError("empty", "the audio contains no samples") }
        let step = cfg.samplesPerClip
        var clips = stride(from: 0, to: totalSamples, by: step).map { start -> AudioClip in
            let n = min(step, totalSamples - start)
            let frames = encoderMelFrames(n, cfg.hopLength)
            return AudioClip(firstSample: start, samples: n, melFrames: frames, tokens: audioTokensForFrames(frames))
        }
        if clips.count > 1 && clips[clips.count - 1].samples < minSamples(cfg) { clips.removeLast() }
        return clips
    }

    // --- resampling ---------------------------------------------------------------------------------------------

    private static let ZERO_CROSSINGS = 32
    private static let KAISER_BETA = 8.6
    private static let ROLLOFF = 0.95

    public static func resample(_ x: [Float], _ from: Int, _ to: Int) -> [Float] {
        let ratio = Double(to) / Double(from)
        let outLen = resampledLength(x.count, from, to)
        let cutoff = ROLLOFF * min(1.0, ratio)              // of the input Nyquist
        let halfWidth = Double(ZERO_CROSSINGS) / cutoff      // in input samples
        let i0Beta = besselI0(KAISER_BETA)
        var out = [Float](repeating: 0, count: outLen)
        for j in 0..<outLen {
            let t = Double(j) / ratio  // output sample j sits at input time t (linear phase, no delay)
            let lo = max(0, Int((t - halfWidth).rounded(.up)))
            let hi = min(x.count - 1, Int(t + halfWidth))
            var acc = 0.0
            if lo <= hi {
                for i in lo...hi {
                    let d = Double(i) - t
                    let u = d / halfWidth
                    let window = besselI0(KAISER_BETA * max(0.0, 1 - u * u).squareRoot()) / i0Beta
                    acc += Double(x[i]) * cutoff * sinc(cutoff * d) * window
                }
            }
            out[j] = Float(acc)
        }
        return out
    }

    private static func sinc(_ x: Double) -> Double { x == 0.0 ? 1.0 : sin(Double.pi * x) / (Double.pi * x) }

    private static func besselI0(_ x: Double) -> Double {
        var sum = 1.0
        var term = 1.0
        let q = x * x / 4
        var k = 1
        while term > 1e-12 * sum {
            term *= q / (Double(k) * Double(k))
            sum += term
            k += 1
        }
        return sum
    }
}

/// A WAV file this reader cannot take, in words.
public struct WavFormatError: Error, LocalizedError, CustomStringConvertible {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
    public var errorDescription: String? { message }
}

/// Mono samples of a PCM WAV file (8-bit unsigned, 16-bit, 32-bit float), scaled as libsndfile does.
public final class WavAudio {
    public let sampleRate: Int
    public let channels: Int
    public let interleaved: [Float]

    init(_ sampleRate: Int, _ channels: Int, _ interleaved: [Float]) {
        self.sampleRate = sampleRate
        self.channels = channels
        self.interleaved = interleaved
    }

    public var mono: [Float] { AudioPrep.downmix(interleaved, channels) }

    public static func parse(data: Data) throws -> WavAudio { try parse([UInt8](data)) }

    public static func parse(_ b: [UInt8]) throws -> WavAudio {
        func u16(_ i: Int) throws -> Int {
            guard i >= 0 && i + 2 <= b.count else { throw WavFormatError("truncated WAV file") }
            return Int(b[i]) | (Int(b[i + 1]) << 8)
        }
        func u32(_ i: Int) throws -> Int {
            let lo = try u16(i)
            let hi = try u16(i + 2)
            return lo | (hi << 16)
        }
        func ascii(_ i: Int) -> String { String(decoding: b[i..<i + 4], as: UTF8.self) }
        guard b.count >= 12 && ascii(0) == "RIFF" && ascii(8) == "WAVE" else { throw WavFormatError("not a WAV file") }
        var i = 12
        var format = 0, channels = 0, rate = 0, bits = 0
        while i + 8 <= b.count {
            let id = ascii(i)
            let size = try u32(i + 4)
            if id == "fmt " {
                format = try u16(i + 8); channels = try u16(i + 10); rate = try u32(i + 12); bits = try u16(i + 22)
                if format == 0xFFFE { format = try u16(i + 32) }  // WAVE_FORMAT_EXTENSIBLE: sub-format GUID starts with it
            } else if id == "data" {
                guard channels > 0 else { throw WavFormatError("WAV data before its fmt chunk") }
                let end = min(b.count, i + 8 + size)
                let data = try decode(b, i + 8, end, format, bits)
                return WavAudio(rate, channels, Array(data[0..<(data.count / channels * channels)]))
            }
            i += 8 + size + (size & 1)
        }
        throw WavFormatError("WAV file without a data chunk")
    }

    private static func decode(_ b: [UInt8], _ start: Int, _ end: Int, _ format: Int, _ bits: Int) throws -> [Float] {
        if format == 1 && bits == 16 {
            return (0..<(end - start) / 2).map { k in
                let i = start + 2 * k
                return Float(Int16(bitPattern: UInt16(b[i]) | (UInt16(b[i + 1]) << 8))) / 32768
            }
        }
        if format == 1 && bits == 8 {
            return (0..<(end - start)).map { k in Float(Int(b[start + k]) - 128) / 128 }
        }
        if format == 3 && bits == 32 {
            return (0..<(end - start) / 4).map { k in
                let i = start + 4 * k
                return Float(bitPattern: UInt32(b[i]) | (UInt32(b[i + 1]) << 8) | (UInt32(b[i + 2]) << 16) |
                             (UInt32(b[i + 3]) << 24))
            }
        }
        throw WavFormatError("WAV format \(format) with \(bits)-bit samples is not supported; use 8/16-bit PCM or " +
                             "32-bit float")
    }
}
