import AVFoundation
import CoreGraphics
import Foundation
import ImageIO
import MegrezCore

/// Photos and audio in the form MegrezCore's plan takes: upright RGB pixels, mono float samples at 16 kHz.
enum Media {
    struct Problem: LocalizedError {
        let message: String
        var errorDescription: String? { message }
    }

    /// Decodes a photo (JPEG, HEIC, PNG... through ImageIO) as stored, then applies its EXIF orientation with the
    /// core (Pillow's exif_transpose). The size is checked before decoding (decompression bombs).
    /// Limits: ImageIO's JPEG/HEIC decoders are Apple's, not libjpeg-turbo, so pixels may differ from the SDK's by a
    /// few levels; an image with transparency is drawn over black (Pillow drops alpha without compositing).
    static func loadImage(_ data: Data, _ cfg: ImageConfig) throws -> RgbImage {
        guard let source = CGImageSourceCreateWithData(data as CFData, nil),
              let properties = CGImageSourceCopyPropertiesAtIndex(source, 0, nil) as? [CFString: Any],
              let width = properties[kCGImagePropertyPixelWidth] as? Int,
              let height = properties[kCGImagePropertyPixelHeight] as? Int else {
            throw Problem(message: "this file is not an image iOS can read; pick a JPEG, HEIC or PNG photo")
        }
        try ImagePrep.checkSize(width, height, cfg)
        let orientation = properties[kCGImagePropertyOrientation] as? Int ?? 1
        guard let image = CGImageSourceCreateImageAtIndex(source, 0, nil) else {
            throw Problem(message: "the photo could not be decoded; it may be damaged")
        }
        let bytesPerRow = image.width * 4
        var rgba = [UInt8](repeating: 0, count: bytesPerRow * image.height)
        let drawn: Bool = rgba.withUnsafeMutableBytes { buffer in
            guard let context = CGContext(data: buffer.baseAddress, width: image.width, height: image.height,
                                          bitsPerComponent: 8, bytesPerRow: bytesPerRow,
                                          space: CGColorSpace(name: CGColorSpace.sRGB) ?? CGColorSpaceCreateDeviceRGB(),
                                          bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue) else { return false }
            context.draw(image, in: CGRect(x: 0, y: 0, width: image.width, height: image.height))
            return true
        }
        if !drawn { throw Problem(message: "not enough memory to decode the photo; try a smaller one") }
        let stored = try RgbImage.fromRgba(image.width, image.height, rgba, bytesPerRow: bytesPerRow)
        return ExifOrientation.apply(stored, orientation)
    }

    /// An audio file (m4a, mp3, wav, caf...) through AVAudioFile, downmixed and resampled to 16 kHz by the core (the
    /// SDK's length checks and clip arithmetic).
    static func loadAudioFile(_ url: URL, _ cfg: AudioConfig) throws -> [Float] {
        let scoped = url.startAccessingSecurityScopedResource()
        defer { if scoped { url.stopAccessingSecurityScopedResource() } }
        let file: AVAudioFile
        do { file = try AVAudioFile(forReading: url) } catch {
            throw Problem(message: "\(url.lastPathComponent) is not an audio file iOS can read; pick m4a, mp3 or wav")
        }
        let format = file.processingFormat  // float32, deinterleaved
        let frames = AVAudioFrameCount(file.length)
        if Double(file.length) / format.sampleRate > cfg.maxAudioSeconds {
            throw AudioInputError("too_long", "\(url.lastPathComponent) is longer than \(Int(cfg.maxAudioSeconds)) s; " +
                                  "trim it or split the recording")
        }
        guard let buffer = AVAudioPCMBuffer(pcmFormat: format, frameCapacity: max(frames, 1)) else {
            throw Problem(message: "not enough memory for \(url.lastPathComponent)")
        }
        try file.read(into: buffer)
        let channels = Int(format.channelCount)
        let n = Int(buffer.frameLength)
        var interleaved = [Float](repeating: 0, count: n * channels)
        if let data = buffer.floatChannelData {
            for c in 0..<channels {
                for i in 0..<n { interleaved[i * channels + c] = data[c][i] }
            }
        }
        return try AudioPrep.toModelRate(AudioPrep.downmix(interleaved, channels), Int(format.sampleRate), cfg,
                                         url.lastPathComponent)
    }
}

/// The microphone through AVAudioEngine, converted to 16 kHz mono float32 by AVAudioConverter as it arrives.
final class Recorder {
    private let engine = AVAudioEngine()
    private var converter: AVAudioConverter?
    private var samples: [Float] = []
    private let lock = NSLock()
    private let target = AVAudioFormat(commonFormat: .pcmFormatFloat32, sampleRate: 16000, channels: 1,
                                       interleaved: false)!

    static func requestPermission() async -> Bool {
        await withCheckedContinuation { continuation in
            AVAudioApplication.requestRecordPermission { continuation.resume(returning: $0) }
        }
    }

    func start() throws {
        let session = AVAudioSession.sharedInstance()
        try session.setCategory(.playAndRecord, mode: .measurement, options: [.defaultToSpeaker])
        try session.setActive(true)
        let input = engine.inputNode
        let format = input.outputFormat(forBus: 0)
        guard format.sampleRate > 0, let converter = AVAudioConverter(from: format, to: target) else {
            throw Media.Problem(message: "no microphone input is available")
        }
        self.converter = converter
        lock.lock(); samples = []; lock.unlock()
        input.installTap(onBus: 0, bufferSize: 4096, format: format) { [weak self] buffer, _ in
            self?.convert(buffer)
        }
        engine.prepare()
        try engine.start()
    }

    private func convert(_ buffer: AVAudioPCMBuffer) {
        guard let converter = converter else { return }
        let capacity = AVAudioFrameCount(Double(buffer.frameLength) * target.sampleRate / buffer.format.sampleRate) + 32
        guard let out = AVAudioPCMBuffer(pcmFormat: target, frameCapacity: capacity) else { return }
        var fed = false
        var error: NSError?
        converter.convert(to: out, error: &error) { _, status in
            if fed { status.pointee = .noDataNow; return nil }
            fed = true
            status.pointee = .haveData
            return buffer
        }
        guard error == nil, let data = out.floatChannelData else { return }
        let chunk = Array(UnsafeBufferPointer(start: data[0], count: Int(out.frameLength)))
        lock.lock(); samples.append(contentsOf: chunk); lock.unlock()
    }

    /// Stops and returns the recording at 16 kHz, checked as the SDK checks audio (too short, too long).
    func stop(_ cfg: AudioConfig) throws -> [Float] {
        engine.inputNode.removeTap(onBus: 0)
        engine.stop()
        try? AVAudioSession.sharedInstance().setActive(false)
        lock.lock(); let recorded = samples; lock.unlock()
        return try AudioPrep.toModelRate(recorded, 16000, cfg, "the recording")
    }
}
